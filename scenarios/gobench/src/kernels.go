package main

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

type kernel struct {
	name string
	run  func() error
}

var kernels = []kernel{
	{"gzip-roundtrip", gzipRoundTrip},
	{"sha256-vs-known", sha256Known},
	{"crc32-two-ways", crc32TwoWays},
	{"json-roundtrip", jsonRoundTrip},
	{"regexp-count", regexpCount},
	{"bigint-factorial", bigFactorial},
	{"sort-stable", sortStable},
	{"template-render", templateRender},
	{"byte-order", byteOrder},
}

// corpus returns deterministic text with repetition, so compression has work to do.
func corpus(n int) []byte {
	var b bytes.Buffer
	x := uint32(2463534242)
	words := []string{"arm64", "amd64", "riscv64", "s390x", "ppc64le", "qemu", "binfmt", "buildx"}
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b.WriteString(words[x%uint32(len(words))])
		b.WriteByte(" \n"[x>>31])
	}
	return b.Bytes()[:n]
}

func gzipRoundTrip() error {
	in := corpus(1 << 20)
	var z bytes.Buffer
	w, err := gzip.NewWriterLevel(&z, flate.BestCompression)
	if err != nil {
		return err
	}
	if _, err := w.Write(in); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	r, err := gzip.NewReader(&z)
	if err != nil {
		return err
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return errors.New("decompressed bytes differ")
	}
	return nil
}

func sha256Known() error {
	got := fmt.Sprintf("%x", sha256.Sum256([]byte("abc")))
	if got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		return fmt.Errorf("sha256(abc) = %s", got)
	}
	return nil
}

func crc32TwoWays() error {
	data := corpus(1 << 18)
	fast := crc32.ChecksumIEEE(data)
	var slow uint32 = 0xffffffff
	for _, c := range data {
		slow ^= uint32(c)
		for i := 0; i < 8; i++ {
			if slow&1 != 0 {
				slow = slow>>1 ^ 0xedb88320
			} else {
				slow >>= 1
			}
		}
	}
	if fast != ^slow {
		return fmt.Errorf("crc32 %08x against bitwise %08x", fast, ^slow)
	}
	return nil
}

type record struct {
	Name    string            `json:"name"`
	Values  []float64         `json:"values"`
	Tags    map[string]string `json:"tags"`
	Nested  *record           `json:"nested,omitempty"`
	Enabled bool              `json:"enabled"`
}

func jsonRoundTrip() error {
	in := record{"outer", []float64{1.5, -2.25, 1e-3}, map[string]string{"arch": "any"},
		&record{Name: "inner", Values: []float64{42}}, true}
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var out record
	if err := json.Unmarshal(data, &out); err != nil {
		return err
	}
	again, _ := json.Marshal(out)
	if !bytes.Equal(data, again) {
		return fmt.Errorf("%s != %s", data, again)
	}
	return nil
}

func regexpCount() error {
	text := string(corpus(1 << 16))
	re := regexp.MustCompile(`\b(arm|amd|riscv)64\b`)
	n := len(re.FindAllStringIndex(text, -1))
	m := 0
	for _, field := range strings.Fields(text) {
		if field == "arm64" || field == "amd64" || field == "riscv64" {
			m++
		}
	}
	if n != m {
		return fmt.Errorf("regexp found %d, fields %d", n, m)
	}
	return nil
}

func bigFactorial() error {
	f := big.NewInt(1)
	for i := int64(2); i <= 300; i++ {
		f.Mul(f, big.NewInt(i))
	}
	g := new(big.Int).MulRange(1, 300)
	if f.Cmp(g) != 0 {
		return errors.New("300! differs between Mul and MulRange")
	}
	digits := len(f.String())
	if digits != 615 {
		return fmt.Errorf("300! has %d digits, expected 615", digits)
	}
	return nil
}

func sortStable() error {
	type pair struct{ key, seq int }
	items := make([]pair, 10000)
	x := 12345
	for i := range items {
		x = (x*1103515245 + 12345) & 0x7fffffff
		items[i] = pair{x % 100, i}
	}
	sort.SliceStable(items, func(a, b int) bool { return items[a].key < items[b].key })
	for i := 1; i < len(items); i++ {
		a, b := items[i-1], items[i]
		if a.key > b.key || (a.key == b.key && a.seq > b.seq) {
			return fmt.Errorf("order broken at %d", i)
		}
	}
	return nil
}

func templateRender() error {
	t := template.Must(template.New("t").Parse(`{{range .}}{{.Name}}={{len .Values}};{{end}}`))
	var b bytes.Buffer
	if err := t.Execute(&b, []record{{Name: "a", Values: []float64{1}}, {Name: "b"}}); err != nil {
		return err
	}
	if b.String() != "a=1;b=0;" {
		return fmt.Errorf("rendered %q", b.String())
	}
	return nil
}

func byteOrder() error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], 0x0102030405060708)
	if binary.LittleEndian.Uint64(buf[:]) != 0x0807060504030201 {
		return errors.New("byte order conversion is wrong")
	}
	return nil
}
