package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"runtime"
)

func main() {
	version := flag.Bool("version", false, "print the version and exit")
	addr := flag.String("addr", ":8080", "listen address")
	flag.Parse()
	if *version {
		fmt.Printf("hello-svc 0.3 %s/%s\n", runtime.GOOS, runtime.GOARCH)
		return
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
