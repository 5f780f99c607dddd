//! `struct ip_conntrack_stat`: the counters `conntrack -S` prints (spec §12).

/// One set of conntrack statistics. nfct keeps one set per table (the kernel keeps one per
/// CPU and `conntrack -S` prints each; nfct prints a single `cpu=0` line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub found: u64,
    pub invalid: u64,
    pub insert: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub error: u64,
    pub search_restart: u64,
    pub clash_resolve: u64,
    pub chaintoolong: u64,
    pub expect_new: u64,
    pub expect_create: u64,
    pub expect_delete: u64,
}

impl Stats {
    /// The counters `conntrack -S` prints, in its order, with their names (the three
    /// expectation counters are not among them).
    pub fn fields(&self) -> [(&'static str, u64); 10] {
        [
            ("found", self.found),
            ("invalid", self.invalid),
            ("insert", self.insert),
            ("insert_failed", self.insert_failed),
            ("drop", self.drop),
            ("early_drop", self.early_drop),
            ("error", self.error),
            ("search_restart", self.search_restart),
            ("clash_resolve", self.clash_resolve),
            ("chaintoolong", self.chaintoolong),
        ]
    }
}
