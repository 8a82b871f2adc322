// gobench: a self-checking Go workload using only the standard library. Each kernel's
// result is checked against a second computation; the last line names the GOARCH the
// binary was built for and whether every check passed.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
)

func main() {
	rounds := flag.Int("rounds", 1, "how many times to run every kernel")
	flag.Parse()
	ok := true
	for r := 0; r < *rounds; r++ {
		for _, k := range kernels {
			if err := k.run(); err != nil {
				fmt.Printf("%s: FAILED: %v\n", k.name, err)
				ok = false
			} else if r == 0 {
				fmt.Printf("%s: ok\n", k.name)
			}
		}
	}
	status := "ok"
	if !ok {
		status = "FAILED"
	}
	fmt.Printf("goarch=%s goos=%s selftest=%s\n", runtime.GOARCH, runtime.GOOS, status)
	if !ok {
		os.Exit(1)
	}
}
