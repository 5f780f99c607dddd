//! The engine on rulesets read from `nft -j` text: verdicts, jumps, sets, maps, counters,
//! payload dependencies and bit fields, ct and fib expressions.

use super::*;
use crate::core::CtOptions;
use crate::fib::{IfAddr, Route, RouteType, RT_TABLE_LOCAL, RT_TABLE_MAIN};
use crate::sysctl::Sysctl;
use crate::uapi::{AF_INET, NF_DROP};

/// A ruleset of one inet table `t` with these chains (name, hook-or-none, policy) and rules
/// (chain, handle, expr JSON).
fn ruleset(chains: &[(&str, Option<&str>, &str)], rules: &[(&str, u64, &str)], extra: &str) -> Ruleset {
    let mut objs = vec![r#"{"table": {"family": "inet", "name": "t", "handle": 1}}"#.to_string()];
    for (name, hook, policy) in chains {
        objs.push(match hook {
            Some(h) => format!(
                r#"{{"chain": {{"family": "inet", "table": "t", "name": "{name}", "handle": 1, "type": "filter", "hook": "{h}", "prio": 0, "policy": "{policy}"}}}}"#
            ),
            None => format!(r#"{{"chain": {{"family": "inet", "table": "t", "name": "{name}", "handle": 1}}}}"#),
        });
    }
    if !extra.is_empty() {
        objs.push(extra.to_string());
    }
    for (chain, handle, expr) in rules {
        objs.push(format!(
            r#"{{"rule": {{"family": "inet", "table": "t", "chain": "{chain}", "handle": {handle}, "expr": {expr}}}}}"#
        ));
    }
    json::parse(&format!(r#"{{"nftables": [{}]}}"#, objs.join(","))).unwrap()
}

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tos: u8) -> Vec<u8> {
    let mut p = vec![0x45, tos, 0, 29, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 9, 0, 0, b'x']);
    p
}

struct Env {
    ct: Conntrack,
    devs: Devices,
    fib: Fib,
}

fn env() -> Env {
    let dev = Dev {
        index: 2,
        name: "eth0".into(),
        mtu: 1500,
        up: true,
        loopback: false,
        link_type: 1,
        addrs: vec![IfAddr { addr: "10.0.0.1".parse().unwrap(), prefix_len: 24 }],
    };
    let mut fib = Fib::default();
    fib.add(Route {
        table: RT_TABLE_LOCAL,
        dst: "10.0.0.1".parse().unwrap(),
        prefix_len: 32,
        typ: RouteType::Local,
        dev: Some(2),
        gateway: None,
        prefsrc: None,
        metric: 0,
        mtu: None,
    })
    .unwrap();
    Env {
        ct: Conntrack::new(CtOptions { seed: Some(1), ..CtOptions::default() }, Sysctl::default()),
        devs: Devices::new(vec![dev]),
        fib,
    }
}

/// Runs the base chain `chain` of `rs` on `pkt` (no conntrack state unless `skb` has one).
fn run(
    env: &Env,
    rs: &Arc<Ruleset>,
    chain: &str,
    pkt: &[u8],
    skb: &mut SkbCt,
    mark: &mut u32,
) -> ChainVerdict {
    let c = rs.tables[0].chains.iter().position(|c| c.name == chain).unwrap();
    let cr = ChainRef { ruleset: rs.clone(), table: 0, chain: c, builtin: false };
    let random = || 7u32;
    let mut ctx = PktCtx {
        data: pkt,
        nat: &crate::nat::NatState::default(),
        family: Family::V4,
        hook: Hook::Forward,
        iif: env.devs.by_index(2),
        oif: None,
        mark,
        skb,
        ct: &env.ct,
        devs: &env.devs,
        fib: Some(&env.fib),
        random: &random,
        now: 0,
    };
    cr.eval(&mut ctx)
}

fn verdict_of(env: &Env, rs: &Arc<Ruleset>, pkt: &[u8]) -> (u32, Decider) {
    let v = run(env, rs, "fw", pkt, &mut SkbCt::default(), &mut 0);
    (v.verdict, v.by)
}

#[test]
fn rules_in_order_jumps_returns_and_policy() {
    let rs = Arc::new(ruleset(
        &[("fw", Some("forward"), "drop"), ("sub", None, ""), ("leaf", None, "")],
        &[
            (
                "fw",
                5,
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}, {"jump": {"target": "sub"}}]"#,
            ),
            (
                "fw",
                6,
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 54}}, {"accept": null}]"#,
            ),
            (
                "sub",
                7,
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.9.0.0", "len": 16}}}}, {"return": null}]"#,
            ),
            ("sub", 8, r#"[{"goto": {"target": "leaf"}}]"#),
            (
                "leaf",
                9,
                r#"[{"counter": {"packets": 0, "bytes": 0}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "udp", "field": "sport"}}, "right": 1}}, {"accept": null}]"#,
            ),
        ],
        "",
    ));
    let e = env();
    let dns = udp4([10, 1, 0, 1], [10, 2, 0, 1], 1000, 53, 0);
    assert_eq!(verdict_of(&e, &rs, &dns), (NF_ACCEPT, Decider::Rule { chain: 2, handle: 9 }));
    // Returned from `sub`: on with the rule after the jump (54 != 53), then the policy.
    let back = udp4([10, 9, 0, 1], [10, 2, 0, 1], 1000, 53, 0);
    assert_eq!(verdict_of(&e, &rs, &back), (NF_DROP, Decider::Policy));
    // `leaf` reached by goto ends by falling off: back to `fw` after the jump, then policy.
    let sport1 = udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0);
    assert_eq!(verdict_of(&e, &rs, &sport1).0, NF_DROP);
    assert_eq!(rs.counters.len(), 1);
    assert_eq!(rs.counters[0].counter.get(), (2, 58));
    assert_eq!(rs.counters[0].handle, Some(9));
}

#[test]
fn payload_dependencies_bit_fields_and_sets() {
    let rs = Arc::new(ruleset(
        &[("fw", Some("forward"), "accept")],
        &[
            // A TCP field never matches a UDP packet, even with !=.
            (
                "fw",
                1,
                r#"[{"match": {"op": "!=", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}, {"drop": null}]"#,
            ),
            (
                "fw",
                2,
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "dscp"}}, "right": 46}}, {"drop": null}]"#,
            ),
            (
                "fw",
                3,
                r#"[{"match": {"op": "==", "left": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "right": "@svc"}}, {"drop": null}]"#,
            ),
            (
                "fw",
                4,
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"set": [22, {"range": [8000, 8080]}]}}}, {"drop": null}]"#,
            ),
        ],
        r#"{"set": {"family": "inet", "name": "svc", "table": "t", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 3, "elem": [{"concat": ["10.2.0.9", "udp", 53]}]}}"#,
    ));
    let e = env();
    let v = |p: &[u8]| verdict_of(&e, &rs, p);
    assert_eq!(v(&udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0)), (NF_ACCEPT, Decider::Policy));
    assert_eq!(
        v(&udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 46 << 2)).1,
        Decider::Rule { chain: 0, handle: 2 }
    );
    assert_eq!(v(&udp4([10, 1, 0, 1], [10, 2, 0, 9], 1, 53, 0)).1, Decider::Rule { chain: 0, handle: 3 });
    assert_eq!(v(&udp4([10, 1, 0, 1], [10, 2, 0, 9], 1, 54, 0)).0, NF_ACCEPT);
    assert_eq!(v(&udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 8001, 0)).1, Decider::Rule { chain: 0, handle: 4 });
    assert_eq!(v(&udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 8081, 0)).0, NF_ACCEPT);
    assert_eq!(v(&[0x45, 0, 0]).0, NF_ACCEPT, "truncated: nothing matches");
}

#[test]
fn verdict_maps_numgen_marks_and_fib() {
    let rs = Arc::new(ruleset(
        &[("fw", Some("forward"), "accept"), ("a", None, ""), ("b", None, "")],
        &[
            (
                "fw",
                1,
                r#"[{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 16384]}}}]"#,
            ),
            (
                "fw",
                2,
                r#"[{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"drop": null}]"#,
            ),
            (
                "fw",
                3,
                r#"[{"vmap": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "data": {"set": [[0, {"goto": {"target": "a"}}], [1, {"goto": {"target": "b"}}]]}}}]"#,
            ),
            ("a", 4, r#"[{"drop": null}]"#),
            ("b", 5, r#"[{"accept": null}]"#),
        ],
        "",
    ));
    let e = env();
    let mut mark = 1;
    let v =
        run(&e, &rs, "fw", &udp4([10, 1, 0, 1], [10, 0, 0, 1], 1, 53, 0), &mut SkbCt::default(), &mut mark);
    assert_eq!((v.verdict, v.by, mark), (NF_DROP, Decider::Rule { chain: 0, handle: 2 }, 0x4001));
    // The random source says 7: reciprocal_scale(7, 2) = 0, chain `a`.
    let v = run(&e, &rs, "fw", &udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0), &mut SkbCt::default(), &mut 0);
    assert_eq!(v.by, Decider::Rule { chain: 1, handle: 4 });
}

#[test]
fn ct_state_and_templates() {
    let e = env();
    let inv = Arc::new(ruleset(
        &[("fw", Some("forward"), "accept")],
        &[(
            "fw",
            1,
            r#"[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["invalid", "untracked"]}}, {"drop": null}]"#,
        )],
        "",
    ));
    let pkt = udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0);
    assert_eq!(run(&e, &inv, "fw", &pkt, &mut SkbCt::default(), &mut 0).verdict, NF_DROP);
    let mut skb = SkbCt::default();
    e.ct.conntrack_in(&pkt, 1, Hook::PreRouting, AF_INET, &mut skb);
    assert_eq!(run(&e, &inv, "fw", &pkt, &mut skb, &mut 0).verdict, NF_ACCEPT);
    e.ct.release(&mut skb);
    // The built-in operations are rulesets of the same engine.
    let zone = builtin::ct_zone(Zone { id: 5, dir: Zone::DIR_BOTH });
    let mut skb = SkbCt::default();
    let random = || 0u32;
    let mut mark = 0;
    let mut ctx = PktCtx {
        data: &pkt,
        nat: &crate::nat::NatState::default(),
        family: Family::V4,
        hook: Hook::PreRouting,
        iif: None,
        oif: None,
        mark: &mut mark,
        skb: &mut skb,
        ct: &e.ct,
        devs: &e.devs,
        fib: None,
        random: &random,
        now: 0,
    };
    assert_eq!(zone.eval(&mut ctx).verdict, NF_ACCEPT);
    assert_eq!(ctx.skb.tmpl, Some(Zone { id: 5, dir: Zone::DIR_BOTH }));
    assert_eq!(builtin::drop_invalid().eval(&mut ctx).verdict, NF_ACCEPT, "a template looks NEW");
    assert_eq!(builtin::ct_mark(0, 0xff, NF_DROP, NF_ACCEPT).eval(&mut ctx).verdict, NF_DROP);
    assert_eq!(builtin::notrack().eval(&mut ctx).verdict, NF_ACCEPT);
    assert_eq!(ctx.skb.nfct, CtRef::None, "a template is not untracked by notrack");
}

/// A host with eth0 (2: 10.0.0.1/24, fd00:1::1/64) and eth1 (3, the default routes), a
/// blackhole route each way, and the local table's local and broadcast routes.
fn routed_env() -> Env {
    let dev = |index: u32, name: &str| Dev {
        index,
        name: name.into(),
        mtu: 1500,
        up: true,
        loopback: false,
        link_type: 1,
        addrs: Vec::new(),
    };
    let mut fib = Fib::default();
    let routes: [(u32, &str, u8, RouteType, u32); 9] = [
        (RT_TABLE_LOCAL, "10.0.0.1", 32, RouteType::Local, 2),
        (RT_TABLE_LOCAL, "10.0.0.255", 32, RouteType::Broadcast, 2),
        (RT_TABLE_LOCAL, "fd00:1::1", 128, RouteType::Local, 2),
        (RT_TABLE_MAIN, "10.0.0.0", 24, RouteType::Unicast, 2),
        (RT_TABLE_MAIN, "0.0.0.0", 0, RouteType::Unicast, 3),
        (RT_TABLE_MAIN, "10.66.0.0", 16, RouteType::Blackhole, 0),
        (RT_TABLE_MAIN, "fd00:1::", 64, RouteType::Unicast, 2),
        (RT_TABLE_MAIN, "::", 0, RouteType::Unicast, 3),
        (RT_TABLE_MAIN, "fd00:66::", 32, RouteType::Blackhole, 0),
    ];
    for (table, dst, prefix_len, typ, d) in routes {
        let r = Route {
            table,
            dst: dst.parse().unwrap(),
            prefix_len,
            typ,
            dev: (d != 0).then_some(d),
            gateway: None,
            prefsrc: None,
            metric: 0,
            mtu: None,
        };
        fib.add(r).unwrap();
    }
    Env {
        ct: Conntrack::new(CtOptions { seed: Some(1), ..CtOptions::default() }, Sysctl::default()),
        devs: Devices::new(vec![dev(2, "eth0"), dev(3, "eth1")]),
        fib,
    }
}

fn udp6(src: &str, dst: &str, proto: u8) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 8, proto, 64];
    p.extend_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
    p
}

/// The fib expression on `pkt` arriving on eth0 at PRE_ROUTING: `oif` as an ifindex (0 for
/// none), `type` as RTN_*.
fn fib_on(env: &Env, pkt: &[u8], result: FibResult, flags: u8) -> u64 {
    let family = if pkt[0] >> 4 == 6 { Family::V6 } else { Family::V4 };
    let (random, mut mark, mut skb) = (|| 0u32, 0, SkbCt::default());
    let ctx = PktCtx {
        data: pkt,
        nat: &crate::nat::NatState::default(),
        family,
        hook: Hook::PreRouting,
        iif: env.devs.by_index(2),
        oif: None,
        mark: &mut mark,
        skb: &mut skb,
        ct: &env.ct,
        devs: &env.devs,
        fib: Some(&env.fib),
        random: &random,
        now: 0,
    };
    fib(result, flags, &ctx).unwrap().as_u64()
}

/// What the live 6.18 kernel answered (tests/kernel/test_host_kernel.py probes it).
#[test]
fn fib_as_the_kernel_answers() {
    let e = routed_env();
    let (oif, typ) = (FibResult::Oif, FibResult::Type);
    let v4 = |s: [u8; 4], d: [u8; 4]| udp4(s, d, 1, 2, 0);
    // A local destination has no output interface; a broadcast one has its route's.
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 0, 0, 1]), oif, FIB_DADDR), 0);
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 0, 0, 255]), oif, FIB_DADDR), 2);
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 66, 0, 1]), oif, FIB_DADDR), 0);
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 9, 0, 1]), oif, FIB_DADDR), 3);
    // rpfilter: the way back must leave by the input interface.
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 9, 0, 1]), oif, FIB_SADDR | FIB_IIF), 2);
    assert_eq!(fib_on(&e, &v4([10, 5, 0, 7], [10, 9, 0, 1]), oif, FIB_SADDR | FIB_IIF), 0);
    let present = FIB_SADDR | FIB_IIF | FIB_PRESENT;
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 9, 0, 1]), oif, present), 1);
    assert_eq!(fib_on(&e, &v4([10, 5, 0, 7], [10, 9, 0, 1]), oif, present), 0);
    // From 0.0.0.0 to a broadcast or local multicast: the input interface, no lookup.
    assert_eq!(fib_on(&e, &v4([0; 4], [255; 4]), oif, FIB_SADDR | FIB_IIF), 2);
    assert_eq!(fib_on(&e, &v4([0; 4], [224, 0, 0, 1]), oif, FIB_DADDR), 2);
    // IPv4 type: the local table only; IPv6 type: the route.
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 66, 0, 1]), typ, FIB_DADDR), 1);
    assert_eq!(fib_on(&e, &v4([10, 0, 0, 7], [10, 0, 0, 1]), typ, FIB_DADDR), 2);
    assert_eq!(fib_on(&e, &udp6("fd00:1::7", "fd00:66::1", 17), typ, FIB_DADDR), 6);
    assert_eq!(fib_on(&e, &udp6("fd00:1::7", "fd00:1::1", 17), typ, FIB_DADDR), 2);
    assert_eq!(fib_on(&e, &udp6("fd00:1::7", "fd00:1::1", 17), oif, FIB_DADDR), 0);
    assert_eq!(fib_on(&e, &udp6("::", "ff02::1", 17), typ, FIB_SADDR), 0, "RTN_UNSPEC");
    assert_eq!(fib_on(&e, &udp6("fd00:9::7", "fd00:1::1", 17), oif, FIB_SADDR | FIB_IIF), 0);
    // Duplicate address detection (ICMPv6 from :: to link-local): the input interface.
    assert_eq!(fib_on(&e, &udp6("::", "ff02::1:ff00:1", 58), oif, FIB_SADDR | FIB_IIF), 2);
    assert_eq!(fib_on(&e, &udp6("::", "ff02::1:ff00:1", 17), oif, FIB_SADDR | FIB_IIF), 0);
}

#[test]
fn oif_exists_and_interface_names() {
    // nft prints `fib saddr . iif oif missing` as a comparison with false, and an iface_index
    // value (`meta iif "eth0"`) as the interface's name.
    let doc = r#"{"nftables": [{"table": {"family": "inet", "name": "t", "handle": 1}},
        {"chain": {"family": "inet", "table": "t", "name": "pre", "handle": 1, "type": "filter", "hook": "prerouting", "prio": 10, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "t", "chain": "pre", "handle": 2, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "eth1"}}, {"accept": null}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "pre", "handle": 3, "expr": [{"match": {"op": "==", "left": {"fib": {"result": "oif", "flags": ["saddr", "mark", "iif"]}}, "right": false}}, {"drop": null}]}}]}"#;
    let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
    let e = json::compile(&doc).unwrap_err();
    assert_eq!(e.at, "inet t pre handle 2");
    assert!(e.message.contains("interface \"eth1\""), "{e}");
    let ifaces = [("eth0".to_string(), 2), ("eth1".to_string(), 3)];
    let rs = Arc::new(json::compile_for(&doc, &ifaces).unwrap());
    let env = routed_env();
    let c = rs.tables[0].chains.iter().position(|c| c.name == "pre").unwrap();
    let cr = ChainRef { ruleset: rs.clone(), table: 0, chain: c, builtin: false };
    let verdict = |src: [u8; 4]| {
        let pkt = udp4(src, [10, 9, 0, 1], 1, 2, 0);
        let (random, mut mark, mut skb) = (|| 0u32, 0, SkbCt::default());
        let mut ctx = PktCtx {
            data: &pkt,
            nat: &crate::nat::NatState::default(),
            family: Family::V4,
            hook: Hook::PreRouting,
            iif: env.devs.by_index(2),
            oif: None,
            mark: &mut mark,
            skb: &mut skb,
            ct: &env.ct,
            devs: &env.devs,
            fib: Some(&env.fib),
            random: &random,
            now: 0,
        };
        cr.eval(&mut ctx).verdict
    };
    assert_eq!(verdict([10, 0, 0, 7]), NF_ACCEPT, "the way back is eth0");
    assert_eq!(verdict([10, 5, 0, 7]), NF_DROP, "the way back is eth1: oif missing");
}

#[test]
fn flags_none_of() {
    // `ct status & seen-reply == 0`, which nft -j lists with the operator "!".
    let rs = Arc::new(ruleset(
        &[("fw", Some("forward"), "accept")],
        &[(
            "fw",
            1,
            r#"[{"match": {"op": "!", "left": {"ct": {"key": "status"}}, "right": "seen-reply"}}, {"drop": null}]"#,
        )],
        "",
    ));
    let e = env();
    let pkt = udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0);
    assert_eq!(run(&e, &rs, "fw", &pkt, &mut SkbCt::default(), &mut 0).verdict, NF_ACCEPT, "no ct");
    let mut skb = SkbCt::default();
    e.ct.conntrack_in(&pkt, 1, Hook::PreRouting, AF_INET, &mut skb);
    assert_eq!(run(&e, &rs, "fw", &pkt, &mut skb, &mut 0).verdict, NF_DROP, "not replied yet");
    e.ct.release(&mut skb);
}

#[test]
fn forward_sees_the_ttl_decremented() {
    let rs = Arc::new(ruleset(
        &[("fw", Some("forward"), "accept")],
        &[
            (
                "fw",
                1,
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "ttl"}}, "right": 64}}, {"accept": null}]"#,
            ),
            (
                "fw",
                2,
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "ttl"}}, "right": 63}}, {"drop": null}]"#,
            ),
        ],
        "",
    ));
    let e = env();
    // udp4 sends TTL 64 with a zero checksum field.
    let v = run(&e, &rs, "fw", &udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0), &mut SkbCt::default(), &mut 0);
    assert_eq!((v.verdict, v.by), (NF_DROP, Decider::Rule { chain: 0, handle: 2 }));
    // The checksum as ip_decrease_ttl leaves it on a little-endian machine.
    let pkt = udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0);
    let (random, mut mark, mut skb) = (|| 0u32, 0, SkbCt::default());
    let ctx = PktCtx {
        data: &pkt,
        nat: &crate::nat::NatState::default(),
        family: Family::V4,
        hook: Hook::PostRouting,
        iif: e.devs.by_index(2),
        oif: None,
        mark: &mut mark,
        skb: &mut skb,
        ct: &e.ct,
        devs: &e.devs,
        fib: Some(&e.fib),
        random: &random,
        now: 0,
    };
    let h = forwarded_header(&ctx, 8, 12).unwrap();
    assert_eq!((h[8], &h[10..12]), (63, &[0x01, 0x00][..]));
    let local = PktCtx { iif: None, ..ctx };
    assert!(forwarded_header(&local, 8, 12).is_none(), "sent by the host: not forwarded");
}

#[test]
fn no_interface_is_the_empty_name() {
    // At FORWARD with no output interface known, and at PRE_ROUTING: `oifname != "eth0"`
    // holds (the kernel compares the empty name), `meta oif 0` too.
    let rs = Arc::new(ruleset(
        &[("fw", Some("forward"), "accept")],
        &[(
            "fw",
            1,
            r#"[{"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "eth0"}}, {"match": {"op": "==", "left": {"meta": {"key": "oif"}}, "right": 0}}, {"drop": null}]"#,
        )],
        "",
    ));
    let e = env();
    let v = run(&e, &rs, "fw", &udp4([10, 1, 0, 1], [10, 2, 0, 1], 1, 53, 0), &mut SkbCt::default(), &mut 0);
    assert_eq!(v.verdict, NF_DROP);
}
