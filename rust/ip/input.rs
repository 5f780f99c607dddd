//! `ip_rcv` / `ipv6_rcv` and what follows PRE_ROUTING (`ip_input.c`, `ip_forward.c`): the
//! receive checks, the routing decision, local delivery or forwarding.

use super::route::{host_route, route_of, Owner, Route};
use super::{Carrier, HookEnd, Outcome, PathKind, Pipeline};
use crate::netfilter::Family;
use crate::uapi::Hook;
use crate::wire::ip;

impl<C: Carrier> Pipeline<'_, C> {
    /// `ip_rcv` / `ipv6_rcv`: a packet from the wire.
    pub(super) fn rcv(&mut self) -> Outcome {
        let checked = match self.family {
            Family::V4 if ip::ip_version(self.base) == Some(4) => ip::ipv4_rcv_check(self.base),
            Family::V6 if ip::ip_version(self.base) == Some(6) => ip::ipv6_rcv_check(self.base),
            Family::V4 => Err("ip_rcv: not an IPv4 packet"),
            Family::V6 => Err("ipv6_rcv: not an IPv6 packet"),
        };
        let len = match checked {
            Ok(len) => len,
            Err(why) => return Outcome::dropped(why),
        };
        self.carrier.with(|st| st.len = Some(len));
        if let HookEnd::Stop(o) = self.run_hook(Hook::PreRouting) {
            return o;
        }
        self.after_prerouting()
    }

    /// The routing decision and what follows it, for a packet that passed PRE_ROUTING.
    fn after_prerouting(&mut self) -> Outcome {
        let net = self.net;
        let own =
            Owner { local: &net.local, all_unicast: self.run.all_local, egress_mtu: net.egress_mtu as usize };
        let route = self.carrier.with(|st| {
            let data = st.data(self.base);
            // The forwarding path's MTU check uses the largest fragment of a reassembled
            // datagram (`frag_max_size`; defrag sets `ignore_df`): it is refragmented on output.
            let len = if st.whole.is_some() { data.len().min(st.max_frag) } else { data.len() };
            match &net.routing {
                Some(r) => host_route(r, self.run.all_local, self.family, data, len, self.run.iif),
                None => route_of(own, self.family, data, len),
            }
        });
        if self.trace.is_some() {
            let dev = |i: Option<u32>| {
                i.and_then(|i| net.devices().by_index(i)).map(|d| format!(" out {}", d.name))
            };
            match route {
                Route::Drop(why) => self.trace_route("drop".into(), crate::uapi::NF_DROP, Some(why)),
                Route::Local => self.trace_route("local delivery".into(), crate::uapi::NF_ACCEPT, None),
                Route::Forward(oif) => self.trace_route(
                    format!("forward{}", dev(oif).unwrap_or_default()),
                    crate::uapi::NF_ACCEPT,
                    None,
                ),
            }
        }
        match route {
            Route::Drop(why) => {
                self.release();
                Outcome::dropped(why)
            }
            Route::Local => match self.run_hook(Hook::LocalIn) {
                HookEnd::Stop(o) => o,
                HookEnd::Continue => Outcome::accept(PathKind::Local),
            },
            Route::Forward(oif) => {
                self.oif = oif;
                for hook in [Hook::Forward, Hook::PostRouting] {
                    if let HookEnd::Stop(o) = self.run_hook(hook) {
                        return o;
                    }
                }
                Outcome::accept(PathKind::Forward)
            }
        }
    }
}
