package loopback

import (
	"context"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for ip, ok := range map[string]bool{
		"127.0.0.1":        true,
		"127.1.2.3":        true,
		"127.255.255.254":  true,
		"::ffff:127.1.0.9": true,
		"128.0.0.1":        false,
		"10.0.0.1":         false,
		"192.0.2.1":        false,
		"::1":              false,
		"fd00::1":          false,
		"localhost":        false,
		"":                 false,
	} {
		if err := Check("pod", ip); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok=%v", ip, err, ok)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	for cidr, ok := range map[string]bool{
		"127.1.0.0/24": true,
		"127.0.0.0/8":  true,
		"127.0.0.0/7":  false,
		"10.0.0.0/24":  false,
		"fd00::/64":    false,
		"127.1.0.0":    false,
	} {
		if err := CheckPrefix("node", cidr); (err == nil) != ok {
			t.Errorf("CheckPrefix(%q) = %v, want ok=%v", cidr, err, ok)
		}
	}
}

func TestDialRefusesOtherAddressesBeforeDialling(t *testing.T) {
	// 192.0.2.1 is TEST-NET-1: were it dialled the test would hang or fail
	// with a network error, not with the rule's message.
	_, err := DialContext(context.Background(), "tcp", "192.0.2.1:80")
	if err == nil || !strings.Contains(err.Error(), "outside 127.0.0.0/8") {
		t.Fatalf("dial 192.0.2.1:80: %v; want a refusal", err)
	}
	if _, err := DialContext(context.Background(), "tcp", "example.com:80"); err == nil {
		t.Fatal("dial of a name was not refused")
	}
}

func TestClaimTakesTheFirstFreeBlockOnce(t *testing.T) {
	dir := t.TempDir()
	a, err := Claim(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Claim(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.N != 1 || b.N != 2 {
		t.Errorf("claimed %d then %d, want 1 then 2", a.N, b.N)
	}
	if got := b.Prefix().String(); got != "127.2.0.0/16" {
		t.Errorf("prefix %s", got)
	}
	a.Release()
	c, err := Claim(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.N != 1 {
		t.Errorf("after releasing 1, claimed %d", c.N)
	}
	b.Release()
	c.Release()
}
