// Command gohog is a test target for headroom's end-to-end tests.
//
// It is a small Go service whose memory behaviour a test can steer over HTTP
// (or with start-up flags): hold or leak Go heap, fragment the heap, grow
// memory outside the Go heap with anonymous mmaps, churn garbage, and return
// freed heap to the OS. It serves the usual observability endpoints that
// headroom reads: expvar (/debug/vars), Prometheus (/metrics, client_golang
// with the runtime/metrics collector) and net/http/pprof (/debug/pprof/).
//
// Once it is listening it prints exactly one line to stdout:
//
//	listening http://HOST:PORT
//
// It builds with Go 1.19 in GOPATH mode against Debian's client_golang; see
// tests/go/README.md and scripts/build-test-programs.sh.
package main

import (
	"encoding/json"
	"expvar" // registers /debug/vars, which includes "memstats"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	kiB = 1 << 10
	miB = 1 << 20

	// pageSize is the stride used to touch memory so that it is resident.
	pageSize = 4096
	// chunkSize is the size of the heap chunks held by /hold and /leak.
	chunkSize = miB
	// tick is the step of the background growers.
	tick = 100 * time.Millisecond
	// leakStep is the granularity of background growth: at low rates the
	// growers wait until at least this much is owed.
	leakStep = 64 * kiB
	// maxMiB bounds every size or rate a request may ask for (1 TiB).
	maxMiB = 1 << 20
)

// sink keeps garbage allocations observable so the compiler cannot drop them.
var sink []byte

// hog owns everything gohog keeps alive. All fields are guarded by mu.
type hog struct {
	mu sync.Mutex

	held  [][]byte // Go heap from /hold, -hold and /leak
	frag  [][]byte // survivors of /fragment
	live  [][]byte // live set of /garbage (live_mib)
	mmaps [][]byte // anonymous mappings, never on the Go heap

	heldBytes, fragBytes, liveBytes, mmapBytes int64

	leakRate     float64 // MiB/s of held heap growth
	mmapLeakRate float64 // MiB/s of off-heap growth
	garbageRate  float64 // MiB/s of garbage churn
}

// touch writes one byte in every page of b so that the pages are resident
// (a fresh Go span or mmap is not backed by memory until it is written).
func touch(b []byte) {
	for i := 0; i < len(b); i += pageSize {
		b[i] = 1
	}
	if len(b) > 0 {
		b[len(b)-1] = 1
	}
}

// allocHeap allocates n bytes of touched Go heap in chunks of at most chunkSize.
func allocHeap(n int64) [][]byte {
	var out [][]byte
	for n > 0 {
		size := int64(chunkSize)
		if n < size {
			size = n
		}
		b := make([]byte, size)
		touch(b)
		out = append(out, b)
		n -= size
	}
	return out
}

// mmapAnon maps n bytes of anonymous private memory and touches every page.
func mmapAnon(n int64) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	touch(b)
	return b, nil
}

// hold adds n bytes of touched, referenced Go heap.
func (h *hog) hold(n int64) {
	chunks := allocHeap(n)
	h.mu.Lock()
	h.held = append(h.held, chunks...)
	h.heldBytes += n
	h.mu.Unlock()
}

// drop forgets all held heap (held, fragment survivors, garbage live set)
// and runs a GC. Background rates and mmaps are left as they are.
func (h *hog) drop() int64 {
	h.mu.Lock()
	n := h.heldBytes + h.fragBytes + h.liveBytes
	h.held, h.frag, h.live = nil, nil, nil
	h.heldBytes, h.fragBytes, h.liveBytes = 0, 0, 0
	h.mu.Unlock()
	runtime.GC()
	return n
}

// mmap adds an anonymous mapping of n bytes, touched.
func (h *hog) mmap(n int64) error {
	if n <= 0 {
		return nil
	}
	b, err := mmapAnon(n)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.mmaps = append(h.mmaps, b)
	h.mmapBytes += n
	h.mu.Unlock()
	return nil
}

// munmap releases every mapping made by mmap and mmap_leak.
func (h *hog) munmap() int64 {
	h.mu.Lock()
	maps, n := h.mmaps, h.mmapBytes
	h.mmaps, h.mmapBytes = nil, 0
	h.mu.Unlock()
	for _, b := range maps {
		if err := syscall.Munmap(b); err != nil {
			log.Printf("munmap: %v", err)
		}
	}
	return n
}

// fragmentSizes are object sizes across many small size classes. Each gets
// an equal share of the bytes; the classes up to a few KiB share spans among
// many objects, so a few random survivors keep whole spans in use.
var fragmentSizes = []int{
	16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
	1024, 1536, 2048, 3072, 4096, 8192, 16384, 32768,
}

// fragment allocates about n bytes of small objects of mixed sizes, frees a
// random ~90 % of them and runs a GC. The survivors pin their spans, so
// HeapInuse - HeapAlloc grows. It returns the survivors' bytes.
func (h *hog) fragment(n int64) int64 {
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	per := n / int64(len(fragmentSizes))
	// Allocate the classes interleaved so that each class's objects are
	// spread over time like a real service's would be.
	remaining := make([]int64, len(fragmentSizes))
	count := int64(0)
	for i, size := range fragmentSizes {
		remaining[i] = per
		count += per / int64(size)
	}
	// Sized up front: growing the index by append would itself leave
	// megabytes of free heap behind.
	objs := make([][]byte, 0, count)
	for more := true; more; {
		more = false
		for i, size := range fragmentSizes {
			if remaining[i] < int64(size) {
				continue
			}
			more = true
			// A small batch per class per round keeps the interleaving cheap.
			for j := 0; j < 64 && remaining[i] >= int64(size); j++ {
				b := make([]byte, size)
				touch(b)
				objs = append(objs, b)
				remaining[i] -= int64(size)
			}
		}
	}
	// Keep a random ~10 %, copied into a right-sized slice so the big index
	// slice itself becomes garbage.
	var kept [][]byte
	var keptBytes int64
	for _, b := range objs {
		if rng.Intn(10) == 0 {
			kept = append(kept, b)
			keptBytes += int64(len(b))
		}
	}
	objs = nil
	h.mu.Lock()
	h.frag = append(h.frag, kept...)
	h.fragBytes += keptBytes
	h.mu.Unlock()
	runtime.GC()
	return keptBytes
}

// setLive replaces the garbage workload's live set with n bytes of heap.
func (h *hog) setLive(n int64) {
	chunks := allocHeap(n)
	h.mu.Lock()
	h.live = chunks
	h.liveBytes = n
	h.mu.Unlock()
}

// rates returns the current background rates in MiB/s.
func (h *hog) rates() (leak, mmapLeak, garbage float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leakRate, h.mmapLeakRate, h.garbageRate
}

// grower calls step with the bytes owed at rate(), every tick, in multiples
// of leakStep. It runs for the life of the process; a zero rate idles it.
func grower(rate func() float64, step func(n int64)) {
	owed := 0.0
	last := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	for now := range t.C {
		elapsed := now.Sub(last).Seconds()
		last = now
		r := rate()
		if r <= 0 {
			owed = 0
			continue
		}
		// Don't let a long stall turn into one huge step.
		if elapsed > 1 {
			elapsed = 1
		}
		owed += r * miB * elapsed
		if owed < leakStep {
			continue
		}
		n := int64(owed) / leakStep * leakStep
		owed -= float64(n)
		step(n)
	}
}

// startGrowers starts the background leak, mmap-leak and garbage goroutines.
func (h *hog) startGrowers() {
	go grower(func() float64 { r, _, _ := h.rates(); return r }, h.hold)
	go grower(func() float64 { _, r, _ := h.rates(); return r }, func(n int64) {
		if err := h.mmap(n); err != nil {
			log.Printf("mmap_leak: mmap %d bytes: %v", n, err)
		}
	})
	go grower(func() float64 { _, _, r := h.rates(); return r }, func(n int64) {
		// Garbage: allocate, touch and immediately drop 64 KiB objects.
		for n > 0 {
			b := make([]byte, 64*kiB)
			touch(b)
			sink = b
			n -= int64(len(b))
		}
		sink = nil
	})
}

// startWarmUp grows the held heap toward target MiB at (target − grown) /
// tau MiB/s: fast at first, then slower, levelling at target, as a cache
// filling after a start does.
func (h *hog) startWarmUp(target, tau float64) {
	var mu sync.Mutex
	grown := 0.0
	go grower(func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return (target - grown) / tau
	}, func(n int64) {
		h.hold(n)
		mu.Lock()
		grown += float64(n) / miB
		mu.Unlock()
	})
}

// memStatsSummary is the part of runtime.MemStats every control reply carries.
type memStatsSummary struct {
	HeapAlloc    uint64
	HeapInuse    uint64
	HeapIdle     uint64
	HeapReleased uint64
	HeapSys      uint64
	Sys          uint64
	NextGC       uint64
	NumGC        uint32
}

func readSummary() memStatsSummary {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memStatsSummary{
		HeapAlloc:    ms.HeapAlloc,
		HeapInuse:    ms.HeapInuse,
		HeapIdle:     ms.HeapIdle,
		HeapReleased: ms.HeapReleased,
		HeapSys:      ms.HeapSys,
		Sys:          ms.Sys,
		NextGC:       ms.NextGC,
		NumGC:        ms.NumGC,
	}
}

// reply writes a 200 JSON object: the action's fields plus "memstats".
func reply(w http.ResponseWriter, fields map[string]interface{}) {
	fields["memstats"] = readSummary()
	writeJSON(w, http.StatusOK, fields)
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// badRequest writes a 400 with a JSON error message.
func badRequest(w http.ResponseWriter, format string, args ...interface{}) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// param parses query parameter name as a number in [0, maxMiB]. A missing
// parameter is def when def >= 0, and an error otherwise.
func param(r *http.Request, name string, def float64) (float64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		if def >= 0 {
			return def, nil
		}
		return 0, fmt.Errorf("missing query parameter %q", name)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%s=%q is not a number", name, s)
	}
	if v < 0 || v > maxMiB {
		return 0, fmt.Errorf("%s=%v is out of range [0, %d]", name, v, maxMiB)
	}
	return v, nil
}

// mibBytes converts MiB to bytes.
func mibBytes(mib float64) int64 { return int64(mib * miB) }

// routes registers the control endpoints on mux.
func (h *hog) routes(mux *http.ServeMux) {
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		mib, err := param(r, "mib", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		h.hold(mibBytes(mib))
		h.mu.Lock()
		total := h.heldBytes
		h.mu.Unlock()
		reply(w, map[string]interface{}{"action": "hold", "mib": mib, "held_bytes": total})
	})
	mux.HandleFunc("/drop", func(w http.ResponseWriter, r *http.Request) {
		n := h.drop()
		reply(w, map[string]interface{}{"action": "drop", "dropped_bytes": n})
	})
	mux.HandleFunc("/freeos", func(w http.ResponseWriter, r *http.Request) {
		debug.FreeOSMemory()
		reply(w, map[string]interface{}{"action": "freeos"})
	})
	mux.HandleFunc("/fragment", func(w http.ResponseWriter, r *http.Request) {
		mib, err := param(r, "mib", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		kept := h.fragment(mibBytes(mib))
		ms := readSummary()
		reply(w, map[string]interface{}{
			"action":                 "fragment",
			"mib":                    mib,
			"kept_bytes":             kept,
			"heap_inuse_minus_alloc": int64(ms.HeapInuse) - int64(ms.HeapAlloc),
		})
	})
	mux.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		rate, err := param(r, "mib_per_s", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		h.mu.Lock()
		h.leakRate = rate
		h.mu.Unlock()
		reply(w, map[string]interface{}{"action": "leak", "mib_per_s": rate})
	})
	mux.HandleFunc("/mmap", func(w http.ResponseWriter, r *http.Request) {
		mib, err := param(r, "mib", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		if err := h.mmap(mibBytes(mib)); err != nil {
			badRequest(w, "mmap %v MiB: %v", mib, err)
			return
		}
		h.mu.Lock()
		total := h.mmapBytes
		h.mu.Unlock()
		reply(w, map[string]interface{}{"action": "mmap", "mib": mib, "mmap_bytes": total})
	})
	mux.HandleFunc("/munmap", func(w http.ResponseWriter, r *http.Request) {
		n := h.munmap()
		reply(w, map[string]interface{}{"action": "munmap", "unmapped_bytes": n})
	})
	mux.HandleFunc("/mmap_leak", func(w http.ResponseWriter, r *http.Request) {
		rate, err := param(r, "mib_per_s", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		h.mu.Lock()
		h.mmapLeakRate = rate
		h.mu.Unlock()
		reply(w, map[string]interface{}{"action": "mmap_leak", "mib_per_s": rate})
	})
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) {
		rate, err := param(r, "mib_per_s", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		// live_mib is optional: when absent the live set is left as it is.
		fields := map[string]interface{}{"action": "garbage", "mib_per_s": rate}
		if r.URL.Query().Get("live_mib") != "" {
			live, err := param(r, "live_mib", -1)
			if err != nil {
				badRequest(w, "%v", err)
				return
			}
			h.setLive(mibBytes(live))
			fields["live_mib"] = live
		}
		h.mu.Lock()
		h.garbageRate = rate
		h.mu.Unlock()
		reply(w, fields)
	})
	mux.HandleFunc("/memstats", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		writeJSON(w, http.StatusOK, ms)
	})
	mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		fields := map[string]interface{}{
			"action":              "state",
			"held_bytes":          h.heldBytes,
			"fragment_bytes":      h.fragBytes,
			"live_bytes":          h.liveBytes,
			"mmap_bytes":          h.mmapBytes,
			"leak_mib_per_s":      h.leakRate,
			"mmap_leak_mib_per_s": h.mmapLeakRate,
			"garbage_mib_per_s":   h.garbageRate,
		}
		h.mu.Unlock()
		reply(w, fields)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]interface{}{"action": "exit"})
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		// Exit after the reply has left.
		go func() {
			time.Sleep(50 * time.Millisecond)
			os.Exit(0)
		}()
	})
}

// registerMetrics swaps the default registry's Go collector for one that also
// exports runtime/metrics (go_gc_*, go_memory_classes_*, go_sched_*), keeping
// the classic go_memstats_* names.
func registerMetrics(runtimeMetrics bool) {
	if !runtimeMetrics {
		return
	}
	prometheus.Unregister(collectors.NewGoCollector())
	prometheus.MustRegister(collectors.NewGoCollector(
		collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsAll),
	))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	hold := flag.Float64("hold", 0, "MiB of Go heap to hold from the start")
	leak := flag.Float64("leak", 0, "MiB/s of Go heap to leak from the start")
	mmapLeak := flag.Float64("mmap-leak", 0, "MiB/s of off-heap (mmap) growth from the start")
	garbage := flag.Float64("garbage", 0, "MiB/s of garbage to churn from the start")
	live := flag.Float64("live", 0, "MiB of live heap kept by the garbage workload")
	warm := flag.Float64("warm", 0,
		"MiB of Go heap to warm up to from the start, fast then slower (a cache filling)")
	warmTau := flag.Float64("warm-tau", 8,
		"seconds: the warm-up's time constant (the rate is what is left over this)")
	runtimeMetrics := flag.Bool("runtime-metrics", true,
		"export runtime/metrics on /metrics besides go_memstats_*")
	flag.Parse()

	for name, v := range map[string]float64{
		"hold": *hold, "leak": *leak, "mmap-leak": *mmapLeak,
		"garbage": *garbage, "live": *live, "warm": *warm,
	} {
		if math.IsNaN(v) || v < 0 || v > maxMiB {
			fmt.Fprintf(os.Stderr, "gohog: -%s=%v is out of range [0, %d]\n", name, v, maxMiB)
			os.Exit(2)
		}
	}

	log.SetPrefix("gohog: ")
	registerMetrics(*runtimeMetrics)
	expvar.NewString("gohog").Set("headroom test target")

	h := &hog{leakRate: *leak, mmapLeakRate: *mmapLeak, garbageRate: *garbage}
	if *hold > 0 {
		h.hold(mibBytes(*hold))
	}
	if *live > 0 {
		h.setLive(mibBytes(*live))
	}
	h.startGrowers()
	if *warm > 0 {
		if !(*warmTau > 0 && *warmTau <= 3600) {
			fmt.Fprintf(os.Stderr, "gohog: -warm-tau=%v is out of range (0, 3600]\n", *warmTau)
			os.Exit(2)
		}
		h.startWarmUp(*warm, *warmTau)
	}

	http.Handle("/metrics", promhttp.Handler())
	h.routes(http.DefaultServeMux)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	// os.Stdout is unbuffered: the line is out as soon as Printf returns.
	fmt.Printf("listening http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
