/* LD_PRELOAD shim for Janus: getifaddrs() with IFF_LOOPBACK cleared on every entry.
 *
 * Janus (1.1.2, src/ice.c) skips every interface flagged loopback when it gathers ICE
 * candidates, with no setting to change that; with this shim and
 * ice_enforce_list = "127.0.0.1" it offers a host candidate on 127.0.0.1, so the
 * benchmarks can run it on loopback beside the relay. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap)
{
	static int (*next)(struct ifaddrs **);
	if (next == NULL)
		next = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
	if (next == NULL)
		return -1;
	int r = next(ifap);
	if (r == 0)
		for (struct ifaddrs *i = *ifap; i != NULL; i = i->ifa_next)
			i->ifa_flags &= ~IFF_LOOPBACK;
	return r;
}
