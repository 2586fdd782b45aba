package main

// The goroutine leak: goroutines started at a steady rate that never exit,
// each parked on a channel nobody sends to, holding a grown stack and a
// small heap object, as a handler that waits forever on a lost reply does.
// Stacks live outside the Go heap (StackInuse), but since Go 1.18 they count
// in the GC goal.

import (
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"sync"
	"time"
)

var (
	goroutinesPerS = flag.Float64("goroutine-leak", 0,
		"goroutines/s started that never exit (each parks with its stack and heap object)")
	goroutineStackKiB = flag.Float64("goroutine-stack-kib", 64,
		"KiB of stack each leaked goroutine grows before it parks")
	goroutineHeapKiB = flag.Float64("goroutine-heap-kib", 2,
		"KiB of Go heap each leaked goroutine keeps referenced")
)

// parked is never closed or sent to: the leaked goroutines wait on it forever.
var parked = make(chan struct{})

type goroutineLeak struct {
	mu       sync.Mutex
	perS     float64
	stackKiB float64
	heapKiB  float64
	started  int64
}

var leakedGoroutines = &goroutineLeak{}

// frame is one recursion step: its locals take about 1 KiB of stack.
func frame(depth int, keep []byte) byte {
	var pad [1000]byte
	pad[depth%len(pad)] = byte(depth)
	if depth <= 1 {
		<-parked
		return pad[0] + keep[0]
	}
	return frame(depth-1, keep) + pad[depth%len(pad)]
}

func (l *goroutineLeak) settings() (perS, stackKiB, heapKiB float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perS, l.stackKiB, l.heapKiB
}

// run starts goroutines at the current rate, every tick, for the life of
// the process; a zero rate idles it.
func (l *goroutineLeak) run() {
	owed := 0.0
	last := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	for now := range t.C {
		elapsed := math.Min(now.Sub(last).Seconds(), 1)
		last = now
		perS, stackKiB, heapKiB := l.settings()
		if perS <= 0 {
			owed = 0
			continue
		}
		owed += perS * elapsed
		for ; owed >= 1; owed-- {
			keep := make([]byte, int(heapKiB*kiB)+1)
			touch(keep)
			go frame(int(stackKiB), keep)
			l.mu.Lock()
			l.started++
			l.mu.Unlock()
		}
	}
}

func init() {
	http.HandleFunc("/goroutine_leak", func(w http.ResponseWriter, r *http.Request) {
		perS, err := param(r, "per_s", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		leakedGoroutines.mu.Lock()
		leakedGoroutines.perS = perS
		started := leakedGoroutines.started
		leakedGoroutines.mu.Unlock()
		reply(w, map[string]interface{}{"goroutine_leak_per_s": perS, "goroutines_leaked": started})
	})
	// The flags are parsed in main: start once they are.
	go func() {
		for !flag.Parsed() {
			time.Sleep(10 * time.Millisecond)
		}
		for name, v := range map[string]float64{
			"goroutine-leak": *goroutinesPerS, "goroutine-stack-kib": *goroutineStackKiB,
			"goroutine-heap-kib": *goroutineHeapKiB,
		} {
			if math.IsNaN(v) || v < 0 || v > maxMiB {
				fmt.Fprintf(os.Stderr, "gohog: -%s=%v is out of range [0, %d]\n", name, v, maxMiB)
				os.Exit(2)
			}
		}
		l := leakedGoroutines
		l.mu.Lock()
		l.perS, l.stackKiB, l.heapKiB = *goroutinesPerS, *goroutineStackKiB, *goroutineHeapKiB
		l.mu.Unlock()
		l.run()
	}()
}
