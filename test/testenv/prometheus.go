package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartPrometheus runs bin/prometheus (built by make tools) scraping the
// given host:port targets every second, and returns its address once every
// target has been scraped (Prometheus reports ready seconds before its first
// scrape; queries in between would see no data). It stops with the test.
func StartPrometheus(t testing.TB, targets ...string) string {
	t.Helper()
	bin := filepath.Join(RepoRoot(), "bin", "prometheus")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s not found: run make tools", bin)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = fmt.Sprintf("%q", target)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: test
  static_configs:
  - targets: [%s]
`, strings.Join(quoted, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
	})
	url := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/-/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && scrapedAll(ctx, url, len(targets)) {
				return url
			}
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Fatalf("prometheus not ready at %s:\n%s", url, log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// scrapedAll reports whether Prometheus has scraped n targets successfully.
func scrapedAll(ctx context.Context, url string, n int) bool {
	if n == 0 {
		return true
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/query?query=count(up%3D%3D1)", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Data struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false
	}
	r := body.Data.Result
	return len(r) == 1 && len(r[0].Value) == 2 && r[0].Value[1] == strconv.Itoa(n)
}
