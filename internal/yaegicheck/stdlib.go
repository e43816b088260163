package yaegicheck

import "strings"

// yaegiStdlib is every standard package Yaegi v0.16.1's stdlib.Symbols
// provides (its go1.22 symbol tables), the only packages an interpreted
// plugin can import: no unsafe, syscall, os/exec, iter, unique, or anything
// newer than Go 1.22. integration/yaegi's TestYaegiCheckListsMatchYaegi
// compares this list with stdlib.Symbols.
var yaegiStdlib = words(`
archive/tar archive/zip bufio bytes cmp compress/bzip2 compress/flate compress/gzip compress/lzw
compress/zlib container/heap container/list container/ring context crypto crypto/aes crypto/cipher
crypto/des crypto/dsa crypto/ecdh crypto/ecdsa crypto/ed25519 crypto/elliptic crypto/hmac
crypto/md5 crypto/rand crypto/rc4 crypto/rsa crypto/sha1 crypto/sha256 crypto/sha512 crypto/subtle
crypto/tls crypto/x509 crypto/x509/pkix database/sql database/sql/driver debug/buildinfo
debug/dwarf debug/elf debug/gosym debug/macho debug/pe debug/plan9obj encoding encoding/ascii85
encoding/asn1 encoding/base32 encoding/base64 encoding/binary encoding/csv encoding/gob
encoding/hex encoding/json encoding/pem encoding/xml errors expvar flag fmt go/ast go/build
go/build/constraint go/constant go/doc go/doc/comment go/format go/importer go/parser go/printer
go/scanner go/token go/types go/version hash hash/adler32 hash/crc32 hash/crc64 hash/fnv
hash/maphash html html/template image image/color image/color/palette image/draw image/gif
image/jpeg image/png index/suffixarray io io/fs io/ioutil log log/slog log/syslog maps math
math/big math/bits math/cmplx math/rand math/rand/v2 mime mime/multipart mime/quotedprintable
net net/http net/http/cgi net/http/cookiejar net/http/fcgi net/http/httptest net/http/httptrace
net/http/httputil net/http/pprof net/mail net/netip net/rpc net/rpc/jsonrpc net/smtp
net/textproto net/url os os/signal os/user path path/filepath reflect regexp regexp/syntax
runtime runtime/debug runtime/metrics runtime/pprof runtime/trace slices sort strconv strings
sync sync/atomic testing testing/fstest testing/iotest testing/quick testing/slogtest
text/scanner text/tabwriter text/template text/template/parse time unicode unicode/utf16
unicode/utf8
`)

// yaegiGenericFuncs are the generic standard-library functions found to run
// under Yaegi v0.16.1, which interprets slices, maps and cmp from a bundled
// Go 1.22 source. Each was called from a small program run by
// interp.New+stdlib.Symbols; the others tried fail to load: slices.Clone,
// Compact, Concat, Delete, DeleteFunc, Equal, Grow, Insert, Reverse
// ("undefined type for E", or the clear builtin), slices.Sort, SortFunc,
// SortStableFunc, IsSorted, BinarySearch, Min, Max ("undefined selector"),
// maps.Clone, Copy, Equal ("undefined type for K"), sync.OnceValue and
// OnceValues ("no symbol"). Add a function here only after running it so.
var yaegiGenericFuncs = words(`
cmp.Compare cmp.Less maps.DeleteFunc slices.Contains slices.ContainsFunc slices.Index slices.IndexFunc
`)

func words(s string) map[string]bool {
	m := make(map[string]bool)
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// YaegiStdlib lists the standard packages the checker lets the plugin import
// (for the test comparing it with Yaegi's own table).
func YaegiStdlib() []string {
	return sortedKeys(yaegiStdlib)
}
