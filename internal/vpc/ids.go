package vpc

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
)

// Resource ID prefixes, as AWS spells them.
const (
	PrefixVPC           = "vpc"
	PrefixSubnet        = "subnet"
	PrefixSecurityGroup = "sg"
	PrefixRule          = "sgr"
	PrefixInterface     = "eni"
	PrefixRouteTable    = "rtb"
	PrefixAssociation   = "rtbassoc"
	PrefixInternetGW    = "igw"
	PrefixNatGateway    = "nat"
	PrefixEIPAllocation = "eipalloc"
	idHexLen            = 17
)

// NewID returns prefix + "-" + 17 lowercase hex digits, like AWS resource IDs.
func NewID(prefix string) string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])[:idHexLen]
}

// validID reports whether s looks like an ID with the given prefix (8 or 17 hex).
func validID(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"-")
	if !ok || (len(rest) != 8 && len(rest) != 17) {
		return false
	}
	for _, c := range rest {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newMAC returns a random unicast, locally administered MAC address
// (first octet x2, x6, xA or xE).
func newMAC() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	b[0] = (b[0] | 0x02) &^ 0x01
	return net.HardwareAddr(b[:]).String()
}

// key is the store key of an account's record.
func key(accountID, id string) string { return accountID + "." + id }
