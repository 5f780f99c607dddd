//! The rules nft installs that nfct evaluates in Rust (`nft_ct.c`, `nft_immediate.c`): a
//! verdict, `ct state`, `ct zone set` (a template), `ct mark set`, `ct mark` and `notrack`.
//! Each is data plus its evaluation on one packet's conntrack state; they reach the entry
//! through the namespace's conntrack, never through the namespace itself.

use crate::core::{Conntrack, CtRef, SkbCt};
use crate::tuple::Zone;
use crate::uapi::NF_ACCEPT;

/// A rule and its verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Always this verdict (a chain's policy, `drop`, `accept`).
    Verdict(u32),
    /// `ct state { ... } VERDICT`: `hit` when the packet's state bit is in `mask`, else `miss`.
    CtState { mask: u32, hit: u32, miss: u32 },
    /// `ct zone set ID` (a template, before conntrack's −200): the packet's entry lives in this
    /// zone. Without effect on a packet that already has conntrack state.
    CtZone(Zone),
    /// `ct mark set`: the bits of `mask` take `value`'s (IPCT_MARK on a change).
    CtMarkSet { value: u32, mask: u32 },
    /// `ct mark and MASK == VALUE VERDICT`: `hit` on a match, else (no entry either) `miss`.
    CtMark { value: u32, mask: u32, hit: u32, miss: u32 },
    /// `notrack` (raw table): the packet stays untracked.
    Notrack,
}

impl Rule {
    /// Evaluates the rule on a packet whose conntrack state is `skb`, in namespace conntrack
    /// `ct`: the verdict.
    pub fn eval(&self, ct: &Conntrack, skb: &mut SkbCt) -> u32 {
        match *self {
            Rule::Verdict(v) => v,
            Rule::CtState { mask, hit, miss } => {
                if skb.state().bit() & mask != 0 {
                    hit
                } else {
                    miss
                }
            }
            Rule::CtZone(zone) => {
                if skb.nfct == CtRef::None {
                    skb.tmpl = Some(zone);
                }
                NF_ACCEPT
            }
            Rule::CtMarkSet { value, mask } => {
                if let CtRef::Ct { slot, gen, .. } = skb.nfct {
                    ct.set_mark(slot, gen, value, mask);
                }
                NF_ACCEPT
            }
            Rule::CtMark { value, mask, hit, miss } => {
                let mark = match skb.nfct {
                    CtRef::Ct { slot, gen, .. } => ct.mark(slot, gen),
                    // A template's mark is 0; an untracked packet has no ct to match.
                    CtRef::None if skb.tmpl.is_some() => Some(0),
                    _ => None,
                };
                if mark.is_some_and(|m| m & mask == value) {
                    hit
                } else {
                    miss
                }
            }
            Rule::Notrack => {
                if skb.nfct == CtRef::None {
                    skb.nfct = CtRef::Untracked;
                    skb.tmpl = None;
                }
                NF_ACCEPT
            }
        }
    }
}
