// Transparent huge pages: an anonymous mapping advised MADV_HUGEPAGE and
// touched once per 2 MiB, so the kernel faults in a whole huge page for each
// byte written. The process then holds (and its cgroup is charged) the whole
// region while using almost none of it, outside anything the Go runtime
// counts: the memory transparent huge pages bloat.
//
// The opposite case, -thp-heap-mib: Go heap in huge pages, every page of it
// used and counted by the runtime (HeapInuse, Sys), as a heap on a node with
// THP "always" has it. That is no bloat.
//
// Registered from init, so main only has to parse the flags: the flags map
// their memory while they are parsed (before gohog listens), /thp maps more
// at run time.

package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

const (
	// hugePageSize is the size of an x86-64 transparent huge page.
	hugePageSize = 2 * miB
	// madvHugepage is MADV_HUGEPAGE (Linux), which syscall does not name.
	madvHugepage = 14
)

// thpRegions holds the huge-page mappings; never unmapped.
var thpRegions struct {
	mu      sync.Mutex
	maps    [][]byte
	bytes   int64 // the huge-page-aligned bytes touched, summed
	touched int64 // bytes written: one per huge page
	heap    [][]byte
}

func init() {
	flag.Func("thp-mib", "MiB of anonymous memory in transparent huge pages (rounded up to whole 2 MiB pages), "+
		"one byte touched in each, mapped before listening",
		func(s string) error {
			mib, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(mib) || mib < 0 || mib > maxMiB {
				return fmt.Errorf("%q is not a number of MiB in [0, %d]", s, maxMiB)
			}
			return mapTHP(mibBytes(mib))
		})
	flag.Func("thp-heap-mib", "MiB of Go heap held in one allocation advised MADV_HUGEPAGE and touched "+
		"page by page (a heap in huge pages that the runtime accounts for), allocated before listening",
		func(s string) error {
			mib, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(mib) || mib < 0 || mib > maxMiB {
				return fmt.Errorf("%q is not a number of MiB in [0, %d]", s, maxMiB)
			}
			return holdHugeHeap(mibBytes(mib))
		})
	http.HandleFunc("/thp", func(w http.ResponseWriter, r *http.Request) {
		mib, err := param(r, "mib", -1)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		if err := mapTHP(mibBytes(mib)); err != nil {
			badRequest(w, "thp %v MiB: %v", mib, err)
			return
		}
		thpRegions.mu.Lock()
		fields := map[string]interface{}{
			"action":        "thp",
			"mib":           mib,
			"thp_bytes":     thpRegions.bytes,
			"touched_bytes": thpRegions.touched,
		}
		thpRegions.mu.Unlock()
		// What the kernel made of it: -1 when smaps_rollup cannot be read.
		fields["anon_huge_pages_bytes"] = anonHugePages()
		reply(w, fields)
	})
}

// mapTHP maps n bytes (rounded up to whole huge pages) of anonymous memory,
// advises MADV_HUGEPAGE and writes one byte in each huge page. The mapping
// is one huge page larger so that its huge pages can be aligned.
func mapTHP(n int64) error {
	if n <= 0 {
		return nil
	}
	pages := (n + hugePageSize - 1) / hugePageSize
	b, err := syscall.Mmap(-1, 0, int((pages+1)*hugePageSize), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("mmap: %v", err)
	}
	if err := syscall.Madvise(b, madvHugepage); err != nil {
		syscall.Munmap(b)
		return fmt.Errorf("madvise(MADV_HUGEPAGE): %v (a kernel without transparent huge pages?)", err)
	}
	// The offset of the first 2 MiB boundary in b.
	first := 0
	if rem := int(uintptr(unsafe.Pointer(&b[0])) % hugePageSize); rem != 0 {
		first = hugePageSize - rem
	}
	for i := int64(0); i < pages; i++ {
		b[first+int(i)*hugePageSize] = 1
	}
	thpRegions.mu.Lock()
	thpRegions.maps = append(thpRegions.maps, b)
	thpRegions.bytes += pages * hugePageSize
	thpRegions.touched += pages
	thpRegions.mu.Unlock()
	return nil
}

// holdHugeHeap allocates n bytes of Go heap in one object, advises the
// huge pages within it MADV_HUGEPAGE before they are first written (fresh
// memory from the OS is not zeroed by the runtime), then touches every page
// and keeps it.
func holdHugeHeap(n int64) error {
	if n <= 0 {
		return nil
	}
	b := make([]byte, n)
	first := 0
	if rem := int(uintptr(unsafe.Pointer(&b[0])) % hugePageSize); rem != 0 {
		first = hugePageSize - rem
	}
	if whole := (len(b) - first) / hugePageSize * hugePageSize; whole > 0 {
		if err := syscall.Madvise(b[first:first+whole], madvHugepage); err != nil {
			return fmt.Errorf("madvise(MADV_HUGEPAGE): %v (a kernel without transparent huge pages?)", err)
		}
	}
	touch(b)
	thpRegions.mu.Lock()
	thpRegions.heap = append(thpRegions.heap, b)
	thpRegions.mu.Unlock()
	return nil
}

// anonHugePages is AnonHugePages of /proc/self/smaps_rollup in bytes, or -1.
func anonHugePages() int64 {
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "AnonHugePages:" && fields[2] == "kB" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				return kb * kiB
			}
		}
	}
	return -1
}
