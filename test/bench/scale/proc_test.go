//go:build bench

package scale

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeseed/rollouts/test/kwok"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times; 100 on Linux.
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time (user and system) a process has used.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// plain. utime and stime are fields 14 and 15.
	s := string(data)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64)
	stime, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, rest[11], rest[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// memory returns a process's resident set size now and its peak (VmHWM)
// since it started or since resetPeak, in bytes.
func memory(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// resetPeak starts VmHWM again from the current RSS.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// controlPlane lists the processes of the cluster's control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kwok): those
// whose command line names the cluster's work directory.
func controlPlane(c *kwok.Cluster) ([]int, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), c.WorkDir()) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process names %s", c.WorkDir())
	}
	return pids, nil
}

// securePort is the --secure-port of the control-plane process whose
// command name is comm (as /proc shows it: at most 15 bytes).
func securePort(comm string) (int, error) {
	pids, err := controlPlane(cl)
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(name)) != comm {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			return 0, err
		}
		for arg := range strings.SplitSeq(string(cmdline), "\x00") {
			if v, ok := strings.CutPrefix(arg, "--secure-port="); ok {
				return strconv.Atoi(v)
			}
		}
		return 0, fmt.Errorf("%s (pid %d) has no --secure-port", comm, pid)
	}
	return 0, fmt.Errorf("no %s process", comm)
}

// cpuByName is the CPU time of the processes, summed by command name
// (etcd, kube-apiserver, …).
func cpuByName(pids []int) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return nil, err
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			return nil, err
		}
		out[strings.TrimSpace(string(comm))] += t
	}
	return out, nil
}

// apiRequests reads the controller's client-go request counter,
// rest_client_requests_total, by method (and code, when not 2xx).
func apiRequests(ctl *kwok.Controller) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, body, err := kwok.HTTPGet(ctx, ctl.Metrics+"/metrics")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("/metrics answered %d", code)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		labels, value, ok := strings.Cut(line[len("rest_client_requests_total{"):], "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("rest_client_requests_total value %q: %w", value, err)
		}
		method, code := "?", ""
		for _, l := range strings.Split(labels, ",") {
			k, val, ok := strings.Cut(l, "=")
			switch {
			case ok && k == "method":
				method = strings.Trim(val, `"`)
			case ok && k == "code":
				code = strings.Trim(val, `"`)
			}
		}
		if !strings.HasPrefix(code, "2") {
			method += " " + code // failed requests count too, apart
		}
		out[method] += v
	}
	return out, nil
}

// logErrors counts the error lines the controller logged after offset
// bytes of its log, and returns the log's size.
func logErrors(ctl *kwok.Controller, offset int64) (errors int, size int64, first string) {
	data, err := os.ReadFile(ctl.LogPath)
	if err != nil || int64(len(data)) < offset {
		return 0, offset, ""
	}
	for _, line := range strings.Split(string(data[offset:]), "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, "\tERROR\t") {
			if errors == 0 {
				first = line
			}
			errors++
		}
	}
	return errors, int64(len(data)), first
}

// planeWrites reads kube-apiserver's apiserver_request_total and sums the
// writes (create, update, patch, delete) it has served, by resource (and
// subresource): what the pods, the controller and the load generator made
// the control plane store.
func planeWrites() (map[string]float64, error) {
	cs, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver's metrics: %w", err)
	}
	out := map[string]float64{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY":
		default:
			continue
		}
		res := l["resource"]
		if l["subresource"] != "" {
			res += "/" + l["subresource"]
		}
		out[res] += m.GetCounter().GetValue()
	}
	return out, nil
}
