//! `ip_local_out` / `ip6_local_out` (`ip_output.c`): a packet this host sends, and the loopback
//! second pass of one addressed to the host itself (spec §1.3).

use super::route::output_is_loopback;
use super::{Carrier, HookEnd, Outcome, PathKind, Pipeline};
use crate::netfilter::Family;
use crate::uapi::Hook;
use crate::wire::ip;

impl<C: Carrier> Pipeline<'_, C> {
    /// `ip_local_out` / `ip6_local_out`: LOCAL_OUT and POST_ROUTING; a packet to one of the
    /// host's own addresses loops back in through PRE_ROUTING and LOCAL_IN still carrying its
    /// entry.
    pub(super) fn local_out(&mut self) -> Outcome {
        let plausible = match self.family {
            Family::V4 => ip::ip_version(self.base) == Some(4),
            Family::V6 => ip::ip_version(self.base) == Some(6),
        };
        if !plausible {
            return Outcome::dropped("ip_local_out: not a packet of this family");
        }
        // The route out (`ip_route_output`): rules at LOCAL_OUT and POST_ROUTING see its
        // interface.
        if let Some(r) = &self.net.routing {
            let dst = self.carrier.with(|st| ip::addrs(st.data(self.base)).map(|(_, d)| d));
            self.oif = dst.and_then(|d| r.fib.lookup(d, None)).and_then(|route| route.dev);
        }
        for hook in [Hook::LocalOut, Hook::PostRouting] {
            if let HookEnd::Stop(o) = self.run_hook(hook) {
                return o;
            }
        }
        let dst = self.carrier.with(|st| ip::addrs(st.data(self.base)).map(|(_, d)| d));
        if !dst.is_some_and(|d| output_is_loopback(&self.net.local, self.net.routing.as_ref(), d)) {
            return Outcome::accept(PathKind::Output);
        }
        // Loopback: `lo` receives it (no receive checks fail on a packet we built ourselves).
        if let HookEnd::Stop(o) = self.run_hook(Hook::PreRouting) {
            return o;
        }
        match self.run_hook(Hook::LocalIn) {
            HookEnd::Stop(o) => o,
            HookEnd::Continue => Outcome::accept(PathKind::Local),
        }
    }
}
