// Package chromium starts Debian's headless chromium for the dashboard's
// browser tests and benchmarks, driven through chromedp.
package chromium

import (
	"context"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
)

// Path is Debian's chromium, which `make chromium` installs (make test and
// make bench run it).
const Path = "/usr/bin/chromium"

// Start starts a headless chromium at 1280×800 with a profile of its own,
// for as long as tb runs. Each chromedp.NewContext of the context it returns
// is a tab of its own. A missing chromium fails tb: it is never skipped.
func Start(tb testing.TB) context.Context {
	tb.Helper()
	if _, err := os.Stat(Path); err != nil {
		tb.Fatalf("%s: %v (make chromium installs Debian's chromium)", Path, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path), chromedp.NoSandbox, chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-quic", true), chromedp.UserDataDir(tb.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	tb.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(cancel)
	// The first Run starts the browser, for as long as ctx lives.
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("starting %s: %v", Path, err)
	}
	return ctx
}
