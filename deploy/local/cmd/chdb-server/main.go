// Command chdb-server runs a ClickHouse server for the local dev stack and for
// tests, from libchdb (ClickHouse as a shared library, see package chdb).
//
//	chdb-server [-lib libchdb.so] [-path DIR] [-tcp-port 19000] [-http-port 18123] [-listen-host 127.0.0.1] [-config-file FILE]
//	chdb-server -fetch-only   # download and verify the pinned libchdb, print its path
//
// It dlopens the library and runs, through chdb_query_cmdline, a
// clickhouse-local invocation that starts the TCP (native) and HTTP listeners
// and then blocks on a never-ending query; the listeners live as long as that
// query runs. The server starts answering about a second after launch (GET
// /ping on the HTTP port answers "Ok."). It runs until killed: SIGTERM ends it;
// MergeTree data already inserted is kept in -path. If the blocking query
// returns, that is an error: the message is printed and the exit status is 1.
package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef void* (*wp_query_cmdline_fn)(int, char**);
typedef const char* (*wp_result_error_fn)(void*);

static void* wp_dlopen(const char* path) { return dlopen(path, RTLD_NOW | RTLD_GLOBAL); }
static const char* wp_dlerror(void) { return dlerror(); }
static void* wp_call_cmdline(void* fn, int argc, char** argv) {
	return ((wp_query_cmdline_fn)fn)(argc, argv);
}
static const char* wp_result_error(void* fn, void* res) {
	if (fn == NULL || res == NULL) return NULL;
	return ((wp_result_error_fn)fn)(res);
}
*/
import "C"

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/wakepush/wakepush/deploy/local/chdb"
)

// blockingQuery starts the listeners and keeps them alive: sleepEachRow(1)
// over an endless system.numbers, one row per block.
const blockingQuery = "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
	"SELECT sleepEachRow(1) FROM system.numbers " +
	"SETTINGS max_block_size=1, function_sleep_max_microseconds_per_block=0 FORMAT Null"

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("chdb-server: ")
	if err := run(os.Args[1:]); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("chdb-server", flag.ContinueOnError)
	lib := fs.String("lib", "", "path of libchdb.so (default: download and verify the pinned release into the cache, see package chdb)")
	path := fs.String("path", "./.data/clickhouse", "ClickHouse data directory (created if missing)")
	tcpPort := fs.Int("tcp-port", 19000, "native protocol port")
	httpPort := fs.Int("http-port", 18123, "HTTP interface port")
	listenHost := fs.String("listen-host", "127.0.0.1", "address to listen on")
	configFile := fs.String("config-file", "", "ClickHouse configuration file (XML), e.g. one naming a users_config with password users")
	fetchOnly := fs.Bool("fetch-only", false, "only download and verify the pinned libchdb into the cache, print its path and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *fetchOnly {
		p, err := chdb.EnsureLibrary(context.Background())
		if err != nil {
			return err
		}
		fmt.Println(p)
		return nil
	}
	if *lib == "" {
		p, err := chdb.EnsureLibrary(context.Background())
		if err != nil {
			return err
		}
		*lib = p
	}
	dataDir, err := filepath.Abs(*path)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}

	argv := []string{"clickhouse"}
	if *configFile != "" {
		// Without a configuration file clickhouse-local ignores users_config and has only
		// the passwordless default user.
		argv = append(argv, "--config-file="+*configFile)
	}
	argv = append(argv,
		"--path="+dataDir,
		fmt.Sprintf("--tcp_port=%d", *tcpPort),
		fmt.Sprintf("--http_port=%d", *httpPort),
		"--listen_host="+*listenHost,
		"--multiquery",
		blockingQuery,
	)
	log.Printf("starting ClickHouse: lib=%s path=%s tcp=%s:%d http=%s:%d", *lib, dataDir, *listenHost, *tcpPort, *listenHost, *httpPort)
	return serve(*lib, argv)
}

// serve loads lib and runs argv; it returns only when ClickHouse gives up.
func serve(lib string, argv []string) error {
	clib := C.CString(lib)
	defer C.free(unsafe.Pointer(clib))
	handle := C.wp_dlopen(clib)
	if handle == nil {
		return fmt.Errorf("dlopen %s: %s", lib, C.GoString(C.wp_dlerror()))
	}
	sym := C.CString("chdb_query_cmdline")
	defer C.free(unsafe.Pointer(sym))
	queryFn := C.dlsym(handle, sym)
	if queryFn == nil {
		return fmt.Errorf("dlsym chdb_query_cmdline in %s: %s", lib, C.GoString(C.wp_dlerror()))
	}
	errSym := C.CString("chdb_result_error")
	defer C.free(unsafe.Pointer(errSym))
	errFn := C.dlsym(handle, errSym) // optional: nil is handled

	// argv lives in C memory for the life of the process.
	cargv := (**C.char)(C.malloc(C.size_t(len(argv)+1) * C.size_t(unsafe.Sizeof(uintptr(0)))))
	slots := unsafe.Slice(cargv, len(argv)+1)
	for i, a := range argv {
		slots[i] = C.CString(a)
	}
	slots[len(argv)] = nil

	res := C.wp_call_cmdline(queryFn, C.int(len(argv)), cargv)
	if msg := C.wp_result_error(errFn, res); msg != nil {
		if s := C.GoString(msg); s != "" {
			return fmt.Errorf("ClickHouse stopped: %s", s)
		}
	}
	return errors.New("ClickHouse stopped: the blocking query returned without an error message")
}
