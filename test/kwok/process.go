package kwok

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Process is a program a test started on this machine (the controller,
// Traefik), its output in a log file of the cluster's log directory.
type Process struct {
	kind    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan error
	once    sync.Once
	exitErr error
}

// StartProcess starts cmd, of a kind ("controller", "traefik") for
// messages, with its output in LogDir/name.log.
func (c *Cluster) StartProcess(kind, name string, cmd *exec.Cmd) (*Process, error) {
	p := &Process{kind: kind, Cmd: cmd, LogPath: filepath.Join(c.LogDir, name+".log"), done: make(chan error, 1)}
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s %s: %w", kind, name, err)
	}
	go func() {
		p.done <- cmd.Wait()
		_ = logFile.Close()
	}()
	return p, nil
}

// Exited returns an error when the process has exited, nil while it runs.
func (p *Process) Exited() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %w", p.kind, err)
	default:
		return nil
	}
}

// Log is what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Stop sends SIGTERM and waits for the process to exit.
func (p *Process) Stop(timeout time.Duration) error {
	p.once.Do(func() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case p.exitErr = <-p.done:
		case <-time.After(timeout):
			_ = p.Cmd.Process.Kill()
			p.exitErr = errors.Join(errors.New("did not exit after SIGTERM"), <-p.done)
		}
	})
	return p.exitErr
}

// Kill kills the process (no graceful shutdown) and returns how it exited.
func (p *Process) Kill() error {
	p.once.Do(func() {
		_ = p.Cmd.Process.Kill()
		p.exitErr = <-p.done
	})
	return p.exitErr
}
