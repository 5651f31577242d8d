// Package datapath turns the VPC model into kernel state: it watches
// internal/vpc for changes, computes each VPC router's desired state
// (pure: [Build]) and converges the kernel with internal/netdev's VPC
// datapath, which touches netlink and nftables.
//
//	instance netns <p>-i<eni>       VPC router netns <p>-v<vpc>               service router <p>-svc
//	eth0 10.0.1.10/24 ── veth ──   i<eni14>  /32 route, proxy ARP
//	default via 10.0.1.1            lo: every subnet gateway /32
//	                                nft table ip <p>: SG chains, member sets,
//	                                  ingress on postrouting after srcnat
//	NAT netns <p>-i<eni> ── veth ── i<eni14>  (forwards, masquerades)
//	                                policy rule per subnet → default route
//	                                  (igw | NAT address | blackhole)
//	                                igw 100.64.255.254/32 ── veth ──        v<vpc14> → uplink (masquerade)
//
// It also serves the two EC2 actions "lambdaplane instance run" needs
// beyond internal/ec2api: AttachNetworkInterface (waits until the
// interface's namespace is built, marks it in-use and returns the
// namespace path) and DetachNetworkInterface.
package datapath
