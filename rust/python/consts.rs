//! The kernel's numbers as Python enums: one `IntEnum` or `IntFlag` per group of `uapi`
//! (`Verdict`, `NfProto`, `InetHook`, `Priority`, `CtInfo`, `CtDir`, `Status`, `CtEvent`,
//! `IpProto`), each member also a module-level name (`nfct.NF_ACCEPT is Verdict.NF_ACCEPT`).
//! Members are ints, so `nfct.IPS_ASSURED & conn.status` keeps working.

use crate::uapi::{Kind, GROUPS};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Adds every group and its members to the module.
pub(super) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let enum_mod = py.import("enum")?;
    for g in GROUPS {
        let base = enum_mod.getattr(match g.kind {
            Kind::Enum => "IntEnum",
            Kind::Flags => "IntFlag",
        })?;
        let members = PyList::empty(py);
        for (name, value) in g.members {
            members.append((*name, *value))?;
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("module", "nfct")?;
        kwargs.set_item("qualname", g.name)?;
        let cls = base.call((g.name, members), Some(&kwargs))?;
        m.add(g.name, &cls)?;
        for (name, _) in g.members {
            m.add(*name, cls.getattr(*name)?)?;
        }
    }
    Ok(())
}

/// A `LINKTYPE_*` number as nfct's messages name it, `147 (USER0)` (`wire::link::describe`):
/// for `nfct replay`'s line on frames of link types it does not decode.
#[pyfunction]
#[pyo3(name = "_link_type")]
pub(super) fn link_type(linktype: u32) -> String {
    crate::wire::link::describe(linktype)
}
