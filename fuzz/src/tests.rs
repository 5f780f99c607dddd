//! The targets over their seed corpora (from the shipped captures in `examples/`, never from
//! elsewhere) and over `regressions/TARGET/*` (inputs that once failed): the CI step. With
//! `NFCT_FUZZ_CORPUS=DIR`, the seed corpora are also written to `DIR/TARGET/` for `cargo fuzz`.

use super::*;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (capture name, [(timestamp ns, IP packet)]) for every capture in examples/.
fn example_packets() -> Vec<(String, Vec<(i64, Vec<u8>)>)> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("pcap" | "pcapng")))
        .collect();
    paths.sort();
    for path in paths {
        let mut cap = Capture::open(&path).expect("an example capture opens");
        let mut pkts = Vec::new();
        cap.for_each(|r| {
            if let Some(p) = link::ip_payload(r.linktype, r.data) {
                pkts.push((r.ts_ns, p.to_vec()));
            }
        })
        .expect("an example capture reads");
        out.push((path.file_name().unwrap().to_string_lossy().into_owned(), pkts));
    }
    assert!(out.len() >= 4, "the shipped captures");
    out
}

/// An IPv4 UDP datagram of `len` payload bytes cut into fragments of `step` bytes (8-aligned).
fn fragments(id: u16, len: usize, step: usize) -> Vec<Vec<u8>> {
    let mut l4 = vec![0x13, 0x88, 0, 53, 0, 0, 0, 0];
    l4.extend((0..len).map(|i| i as u8));
    let n = l4.len() as u16;
    l4[4..6].copy_from_slice(&n.to_be_bytes());
    let mut out = Vec::new();
    for (i, chunk) in l4.chunks(step).enumerate() {
        let off = (i * step / 8) as u16;
        let more = if (i + 1) * step < l4.len() { 0x2000 } else { 0 };
        let mut p = vec![0x45, 0, 0, 0];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&(off | more).to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0, 192, 168, 1, 10, 198, 51, 100, 7]);
        p.extend_from_slice(chunk);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let c = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        out.push(p);
    }
    out
}

/// The seed corpus of each target.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let examples = example_packets();
    let as_records = |pkts: &[(i64, Vec<u8>)], sel: u8| {
        let mut v = Vec::new();
        let mut last = pkts.first().map_or(0, |p| p.0);
        for (ts, p) in pkts {
            let dt = ((ts - last).max(0) / 1_000_000).min(255) as u8;
            last = *ts;
            encode(sel, dt, p, &mut v);
        }
        v
    };
    let frags = {
        let mut v = Vec::new();
        for (i, f) in fragments(7, 3000, 1480).iter().rev().enumerate() {
            encode(0, i as u8, f, &mut v);
        }
        for f in fragments(8, 200, 64) {
            encode(0, 1, &f, &mut v);
        }
        v
    };
    match target {
        "wire" => examples.iter().flat_map(|(_, p)| p.iter().map(|x| x.1.clone())).collect(),
        "capture" => {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(root().join("examples")).expect("examples/").flatten() {
                let p = entry.path();
                if matches!(p.extension().and_then(|x| x.to_str()), Some("pcap" | "pcapng")) {
                    let bytes = std::fs::read(&p).expect("read");
                    out.push(bytes[..bytes.len() / 2].to_vec());
                    out.push(bytes);
                }
            }
            out
        }
        "pipeline" => {
            let mut out: Vec<Vec<u8>> = examples
                .iter()
                .enumerate()
                .map(|(i, (_, p))| {
                    let mut v = vec![(i * 37) as u8];
                    v.extend(as_records(p, 0));
                    v
                })
                .collect();
            out.push([vec![3u8], frags.clone()].concat());
            out
        }
        "defrag" => vec![frags],
        "host" => {
            let mut out = vec![ROUTER.as_bytes().to_vec()];
            for entry in std::fs::read_dir(root().join("examples")).expect("examples/").flatten() {
                let p = entry.path();
                if p.extension().and_then(|x| x.to_str()) == Some("json") {
                    out.push(std::fs::read(&p).expect("read"));
                }
            }
            out
        }
        "nat" => {
            let mut out: Vec<Vec<u8>> = examples.iter().map(|(_, p)| as_records(p, 0)).collect();
            let mut v = Vec::new();
            for p in sample_packets() {
                encode(0, 1, &p, &mut v);
            }
            // A reply from the server to the masqueraded address and a port forward.
            let mut back = sample_packets()[0].clone();
            back[12..16].copy_from_slice(&[198, 51, 100, 7]);
            back[16..20].copy_from_slice(&[203, 0, 113, 1]);
            back.swap(20, 22);
            back.swap(21, 23);
            encode(1, 1, &back, &mut v);
            let mut fwd = sample_packets()[1].clone();
            fwd[12..16].copy_from_slice(&[198, 51, 100, 9]);
            fwd[16..20].copy_from_slice(&[203, 0, 113, 1]);
            fwd[22..24].copy_from_slice(&8080u16.to_be_bytes());
            encode(1, 1, &fwd, &mut v);
            out.push(v);
            out
        }
        _ => panic!("no target {target}"),
    }
}

fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions").join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<_> = rd.flatten().map(|e| (e.path(), std::fs::read(e.path()).expect("read"))).collect();
    out.sort();
    out
}

/// Small deterministic mutations of each seed (bytes flipped, cut short), so that the plain
/// test also meets some hostile input without libFuzzer.
fn mutations(seed: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut m = seed.to_vec();
            if m.is_empty() {
                return m;
            }
            for _ in 0..1 + next() % 8 {
                let i = (next() % m.len() as u64) as usize;
                m[i] ^= 1 << (next() % 8);
            }
            if next() % 4 == 0 {
                m.truncate((next() % m.len() as u64) as usize);
            }
            m
        })
        .collect()
}

fn run_target(name: &str, f: fn(&[u8]), mutants: usize) {
    let seeds = seeds(name);
    assert!(!seeds.is_empty());
    if let Ok(dir) = std::env::var("NFCT_FUZZ_CORPUS") {
        let d = Path::new(&dir).join(name);
        std::fs::create_dir_all(&d).expect("corpus dir");
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i:04}")), s).expect("write seed");
        }
    }
    for s in &seeds {
        f(s);
        for m in mutations(s, mutants) {
            f(&m);
        }
    }
    for (path, input) in regressions(name) {
        eprintln!("regression {}", path.display());
        f(&input);
    }
}

#[test]
fn wire_corpus() {
    run_target("wire", wire, 20);
}

#[test]
fn capture_corpus() {
    run_target("capture", capture, 20);
}

#[test]
fn pipeline_corpus() {
    run_target("pipeline", pipeline, 10);
}

#[test]
fn defrag_corpus() {
    run_target("defrag", defrag, 50);
}

#[test]
fn host_corpus() {
    run_target("host", host, 10);
}

#[test]
fn nat_corpus() {
    run_target("nat", nat, 10);
}

#[test]
fn checksum_fixing_is_checked() {
    // The NAT target's oracle must be able to fail.
    let mut p = sample_packets()[0].clone();
    assert!(checksums_ok(&p));
    p[25] ^= 1;
    assert!(!checksums_ok(&p));
}
