// Package loopback holds the one network rule of the test environment and
// the demo (DESIGN §15): every address a test process listens on, dials, or
// lets the cluster hand out is inside 127.0.0.0/8, so nothing a test does
// can reach or be reached from another machine.
package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
)

// Net is 127.0.0.0/8. IPv6's ::1 is left out on purpose: the kwok nodes hand
// out IPv4 pod addresses only, and one family keeps the rule checkable.
var Net = netip.MustParsePrefix("127.0.0.0/8")

// Check returns an error naming what when ip is not an address of Net.
func Check(what, ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("%s: %q is not an IP address: %w", what, ip, err)
	}
	if !Net.Contains(a.Unmap()) {
		return fmt.Errorf("%s: %s is outside %s; the test environment uses loopback addresses only", what, ip, Net)
	}
	return nil
}

// CheckPrefix returns an error naming what when cidr is not inside Net.
func CheckPrefix(what, cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("%s: %q is not a CIDR: %w", what, cidr, err)
	}
	if p.Bits() < Net.Bits() || !Net.Contains(p.Addr().Unmap()) {
		return fmt.Errorf("%s: %s is not inside %s; the test environment uses loopback addresses only", what, cidr, Net)
	}
	return nil
}

// DialContext dials like net.Dialer but refuses any address outside Net
// before a packet leaves: it is the DialContext of every HTTP client the
// tests use against processes they started.
func DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if err := Check("dial "+addr, host); err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// A Block is 127.N.0.0/16, claimed by this process for the addresses of
// one cluster: its nodes' podCIDRs and addresses (test/e2e/cluster.sh,
// LOOPBACK_BLOCK). Two clusters whose pods are served (test/podsim) at the
// same time, say the e2e runs of two checkouts, must not share addresses,
// so each claims its own block; the claim is a lock on a file and ends
// when the process does, however it ends.
type Block struct {
	N    int
	file *os.File
}

// Prefix is the block's addresses.
func (b *Block) Prefix() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(b.N), 0, 0}), 16)
}

// Release gives the block up.
func (b *Block) Release() { _ = b.file.Close() }

// Claim claims the first free block from 127.1.0.0/16 on (127.0.0.0/16
// holds 127.0.0.1, which every process uses), through lock files in dir:
// the blocks are this machine's, and dir should be too.
func Claim(dir string) (*Block, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for n := 1; n < 255; n++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("127.%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &Block{N: n, file: f}, nil
		}
		_ = f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("claiming 127.%d.0.0/16: %w", n, err)
		}
	}
	return nil, fmt.Errorf("every block of 127.0.0.0/8 is claimed (lock files in %s)", dir)
}

// ClaimFree claims the first free block in ClaimDir: the one call of the
// tests, benchmarks and the demo, which share the machine's blocks.
func ClaimFree() (*Block, error) {
	dir, err := ClaimDir()
	if err != nil {
		return nil, err
	}
	return Claim(dir)
}

// ClaimDir is where the processes of one user claim blocks: beside the
// tools cache (test/tools/install.sh).
func ClaimDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "kubeseed-rollouts", "loopback"), nil
}
