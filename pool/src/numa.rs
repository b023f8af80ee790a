//! NUMA placement: which node an arena binds to, binding before first touch, and reading
//! the placement back after prefault.
//!
//! With the `numa` feature (the default) this goes through hwloc ([`hwlocality`]):
//!
//! 1. **Placement.** The [`NumaPolicy`] is resolved to one NUMA node (OS index) against
//!    the machine's topology: `Local` is the node of the CPU the creating thread runs on,
//!    `Cpu(n)` the node of OS CPU `n`, `Node(n)` that node. A CPU's node is the NUMA node
//!    closest to it, the one whose CPU set is the smallest that contains it
//!    ([`node_for_cpu`]). These functions are pure over a [`Topology`], so they are tested
//!    on hwloc synthetic topologies with several nodes.
//! 2. **Binding.** The freshly mapped, untouched chunk gets an `MPOL_BIND` policy for that
//!    one node through `hwloc_set_area_membind` (policy `Bind`, flag `STRICT`), so every
//!    page faulted in afterwards, by any thread, comes from that node. On a single-node
//!    machine the bind is still made. A CPU or node that does not exist is an error naming
//!    it; a kernel that refuses the bind is an error too, except under `Local`, where the
//!    arena falls back to first touch by the creating thread (which lands on the same node)
//!    and the report says why.
//! 3. **Read-back.** After prefault, `hwloc_get_area_memlocation` (`move_pages` on Linux)
//!    says which nodes actually hold the chunk's pages; the report carries them.
//!
//! The topology of the real machine is discovered afresh on each call: mapping a chunk is
//! a cold path.
//!
//! Without the feature the arena relies on first touch from the thread that creates it,
//! and says so in its report.

use std::fmt;

use crate::config::NumaPolicy;
use crate::error::PoolError;

/// How an arena chunk is placed, as reported after prefault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NumaBinding {
    /// The chunk is bound to `node` (OS index) with a strict policy: hwloc's `Bind`
    /// (`MPOL_BIND` on Linux), so its pages can come from no other node.
    Bound {
        /// The node the policy asked for.
        node: u32,
        /// The nodes hwloc reports holding the chunk's pages after prefault, or `None`
        /// when the kernel could not tell.
        read_back: Option<Vec<u32>>,
    },
    /// No binding: pages land on the node of the thread that prefaulted them (the thread
    /// that created the arena or mapped the chunk).
    FirstTouch {
        /// Why no binding was made.
        reason: String,
    },
}

impl fmt::Display for NumaBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumaBinding::Bound { node, read_back } => {
                write!(f, "bound to node {node}")?;
                match read_back {
                    Some(nodes) => write!(f, " (pages read back on node(s) {nodes:?})"),
                    None => f.write_str(" (placement could not be read back)"),
                }
            }
            NumaBinding::FirstTouch { reason } => write!(f, "first touch ({reason})"),
        }
    }
}

/// Binds `ptr..ptr+len` according to `policy`, before any page is touched.
///
/// # Safety
///
/// The same contract as the `numa` build's: a live mapping owned by the caller.
#[cfg(not(feature = "numa"))]
pub(crate) unsafe fn bind(
    _ptr: *mut u8,
    _len: usize,
    policy: NumaPolicy,
) -> Result<NumaBinding, PoolError> {
    let reason = match policy {
        NumaPolicy::FirstTouch => "first touch was asked for",
        _ => "built without the `numa` feature; pages follow the creating thread",
    };
    Ok(NumaBinding::FirstTouch {
        reason: reason.into(),
    })
}

/// Reads back where the pages of `ptr..ptr+len` are, after prefault.
///
/// # Safety
///
/// The same contract as the `numa` build's: the live mapping `binding` was made for.
#[cfg(not(feature = "numa"))]
pub(crate) unsafe fn read_back(_ptr: *mut u8, _len: usize, binding: NumaBinding) -> NumaBinding {
    binding
}

/// hwloc's view of a machine, re-exported so callers of the placement functions use the
/// same `hwlocality` version as this crate. Build one for a real machine with
/// `Topology::new()`, or a made-up one with
/// `Topology::builder().from_synthetic("pack:2 [numa] core:4 pu:2")?.build()?`.
#[cfg(feature = "numa")]
pub use hwlocality::Topology;

#[cfg(feature = "numa")]
use hwlocality::{
    cpu::binding::CpuBindingFlags,
    memory::{
        binding::{MemoryBindingFlags, MemoryBindingPolicy},
        nodeset::NodeSet,
    },
    object::types::ObjectType,
};

/// The OS indices of the NUMA nodes of `topology`, ascending.
#[cfg(feature = "numa")]
pub fn nodes(topology: &Topology) -> Vec<u32> {
    let mut nodes: Vec<u32> = topology
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|n| n.os_index().and_then(|i| u32::try_from(i).ok()))
        .collect();
    nodes.sort_unstable();
    nodes
}

/// A CPU or node set in hwloc's list syntax, e.g. `0-3,8`.
#[cfg(feature = "numa")]
fn list(set: &impl AsRef<hwlocality::bitmap::Bitmap>) -> String {
    set.as_ref().to_string()
}

/// The NUMA node (OS index) local to OS CPU `cpu` in `topology`.
///
/// That is the node whose CPU set is the smallest one containing the CPU: on a machine
/// whose packages each carry their own memory it is the package's node, not a memory-only
/// node attached to the whole machine. Ties go to the lowest OS index.
///
/// # Errors
///
/// [`PoolError::Numa`] when the topology has no CPU with that OS index (the message lists
/// the CPUs it has), or, in a malformed topology, no NUMA node covering it.
#[cfg(feature = "numa")]
pub fn node_for_cpu(topology: &Topology, cpu: usize) -> Result<u32, PoolError> {
    let pu = topology.pu_with_os_index(cpu).ok_or_else(|| {
        PoolError::Numa(format!(
            "CPU {cpu} does not exist in this topology (CPUs {})",
            list(&*topology.cpuset())
        ))
    })?;
    let no_node = || {
        PoolError::Numa(format!(
            "no NUMA node of this topology (nodes {}) covers CPU {cpu}",
            list(&*topology.nodeset())
        ))
    };
    let pu_set = pu.cpuset().ok_or_else(no_node)?;
    topology
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|node| {
            let set = node.cpuset()?;
            if !set.includes(&*pu_set) {
                return None;
            }
            let os_index = u32::try_from(node.os_index()?).ok()?;
            Some((set.weight().unwrap_or(usize::MAX), os_index))
        })
        .min()
        .map(|(_weight, os_index)| os_index)
        .ok_or_else(no_node)
}

/// `node` itself, when `topology` has a NUMA node with that OS index.
///
/// # Errors
///
/// [`PoolError::Numa`] naming the node and listing the nodes the topology has.
#[cfg(feature = "numa")]
pub fn check_node(topology: &Topology, node: u32) -> Result<u32, PoolError> {
    let exists = usize::try_from(node)
        .ok()
        .and_then(|n| topology.node_with_os_index(n))
        .is_some();
    if exists {
        Ok(node)
    } else {
        Err(PoolError::Numa(format!(
            "NUMA node {node} does not exist in this topology (nodes {})",
            list(&*topology.nodeset())
        )))
    }
}

/// The node `policy` asks for in `topology`, or `None` for [`NumaPolicy::FirstTouch`].
///
/// `current_cpu` gives the OS index of the CPU the calling thread runs on; it is called
/// only for [`NumaPolicy::Local`].
///
/// # Errors
///
/// What [`node_for_cpu`] and [`check_node`] return, or the error of `current_cpu`.
#[cfg(feature = "numa")]
pub fn node_for_policy(
    topology: &Topology,
    policy: NumaPolicy,
    current_cpu: impl FnOnce() -> Result<usize, PoolError>,
) -> Result<Option<u32>, PoolError> {
    match policy {
        NumaPolicy::Local => node_for_cpu(topology, current_cpu()?).map(Some),
        NumaPolicy::Cpu(cpu) => node_for_cpu(topology, cpu).map(Some),
        NumaPolicy::Node(node) => check_node(topology, node).map(Some),
        NumaPolicy::FirstTouch => Ok(None),
    }
}

/// The OS index of the CPU the calling thread last ran on, as hwloc sees it.
#[cfg(feature = "numa")]
fn current_cpu(topology: &Topology) -> Result<usize, PoolError> {
    let set = topology
        .last_cpu_location(CpuBindingFlags::THREAD)
        .map_err(|e| {
            PoolError::Numa(format!(
                "cannot tell which CPU this thread runs on ({e}); pin the thread or use \
                 NumaPolicy::Cpu or NumaPolicy::Node"
            ))
        })?;
    set.first_set()
        .map(usize::from)
        .ok_or_else(|| PoolError::Numa("hwloc reported no CPU for the current thread".into()))
}

/// The real machine's topology, discovered once per process (discovery costs about 10 ms,
/// and every chunk binds and reads back).
#[cfg(feature = "numa")]
fn this_machine() -> Result<&'static Topology, String> {
    static TOPOLOGY: std::sync::OnceLock<Result<Topology, String>> = std::sync::OnceLock::new();
    TOPOLOGY
        .get_or_init(|| {
            Topology::new()
                .map_err(|e| format!("hwloc could not discover this machine's topology: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `ptr..ptr+len` as the slice hwlocality's area functions take. Only its address and
/// length reach hwloc (`mbind`, `get_mempolicy`, `move_pages`); no byte is read or written
/// through it. The element type claims neither initialised contents nor immutability, so
/// the slice is valid whatever the pages hold and whoever else points at them.
///
/// # Safety
///
/// `ptr..ptr+len` must lie inside one live mapping for as long as the slice is used, with
/// `ptr` non-null and `len <= isize::MAX`.
#[cfg(feature = "numa")]
unsafe fn area<'a>(
    ptr: *mut u8,
    len: usize,
) -> &'a [std::cell::UnsafeCell<std::mem::MaybeUninit<u8>>] {
    debug_assert!(!ptr.is_null());
    // SAFETY: the caller guarantees `ptr..ptr+len` is one live allocation (mapping) of at
    // most `isize::MAX` bytes and `ptr` is non-null; the element type has alignment 1 and
    // every bit pattern (even uninitialised) is valid for it; `UnsafeCell` means this
    // shared slice asserts nothing about other accesses to the bytes.
    unsafe { std::slice::from_raw_parts(ptr.cast(), len) }
}

/// Binds `ptr..ptr+len` according to `policy`, before any page is touched.
///
/// # Safety
///
/// `ptr..ptr+len` must be a live mapping owned by the caller (the chunk `backing` just
/// mapped), non-null and at most `isize::MAX` bytes.
///
/// The policy is resolved with [`node_for_policy`] against the real machine,
/// then the range gets hwloc's `Bind` policy (`MPOL_BIND`) for that node with the
/// `STRICT` flag, so hwloc reports a failure instead of substituting another policy. No
/// `MIGRATE` flag: nothing is faulted in yet, so there is nothing to move (and hwlocality
/// refuses `MIGRATE` for area binding).
///
/// # Errors
///
/// [`PoolError::Numa`] when the CPU or node does not exist, the topology cannot be read,
/// or the kernel refuses the binding under `Cpu(n)` or `Node(n)`. Under `Local` a refused
/// binding degrades to [`NumaBinding::FirstTouch`] naming the refusal: the creating thread
/// prefaults the chunk, so first touch puts it on the same node.
#[cfg(feature = "numa")]
pub(crate) unsafe fn bind(
    ptr: *mut u8,
    len: usize,
    policy: NumaPolicy,
) -> Result<NumaBinding, PoolError> {
    if policy == NumaPolicy::FirstTouch {
        return Ok(NumaBinding::FirstTouch {
            reason: "first touch was asked for".into(),
        });
    }
    let topology = this_machine().map_err(PoolError::Numa)?;
    let Some(node) = node_for_policy(topology, policy, || current_cpu(topology))? else {
        return Ok(NumaBinding::FirstTouch {
            reason: "first touch was asked for".into(),
        });
    };
    let set = NodeSet::from(
        hwlocality::bitmap::BitmapIndex::try_from(node as usize).map_err(|_| {
            PoolError::Numa(format!("NUMA node {node} is out of hwloc's index range"))
        })?,
    );
    let refused = |why: String| {
        if policy == NumaPolicy::Local {
            tracing::warn!(
                "ringfort-pool: cannot bind to the local NUMA node {node} ({why}); relying on \
                 first touch by the creating thread"
            );
            Ok(NumaBinding::FirstTouch {
                reason: format!("binding to local node {node} was refused: {why}"),
            })
        } else {
            Err(PoolError::Numa(format!(
                "binding {len} B to NUMA node {node} was refused: {why}"
            )))
        }
    };
    let supported = topology
        .feature_support()
        .memory_binding()
        .is_some_and(|s| s.set_area() && s.bind_policy());
    if !supported {
        return refused("hwloc cannot bind memory areas on this system".into());
    }
    // SAFETY: `bind`'s safety contract: `ptr..ptr+len` is the chunk just
    // mapped, live and owned by the caller for the whole call; `mmap` never returns null
    // nor a mapping longer than `isize::MAX`.
    let target = unsafe { area(ptr, len) };
    match topology.bind_memory_area(
        target,
        &set,
        MemoryBindingPolicy::Bind,
        MemoryBindingFlags::STRICT,
    ) {
        Ok(()) => Ok(NumaBinding::Bound {
            node,
            read_back: None,
        }),
        Err(e) => refused(e.to_string()),
    }
}

/// Reads back where the pages of `ptr..ptr+len` are, after prefault.
///
/// # Safety
///
/// `ptr..ptr+len` must be the live mapping `binding` was made for.
///
/// For a
/// [`NumaBinding::Bound`] binding this fills `read_back` with the OS indices of the nodes
/// holding the pages (`hwloc_get_area_memlocation`), or leaves it `None` when the query
/// fails or names no node. A binding whose pages are found elsewhere is logged as a
/// warning. Other bindings are returned unchanged.
#[cfg(feature = "numa")]
pub(crate) unsafe fn read_back(ptr: *mut u8, len: usize, binding: NumaBinding) -> NumaBinding {
    let NumaBinding::Bound { node, .. } = binding else {
        return binding;
    };
    let located = this_machine().and_then(|topology| {
        // SAFETY: `read_back`'s safety contract: `ptr..ptr+len` is the
        // chunk it mapped and prefaulted, live and owned by the caller for the whole call;
        // `mmap` never returns null nor a mapping longer than `isize::MAX`.
        let target = unsafe { area(ptr, len) };
        topology
            .area_memory_location::<_, NodeSet>(target, MemoryBindingFlags::empty())
            .map_err(|e| e.to_string())
    });
    let read_back = match located {
        Ok(set) => {
            let nodes: Vec<u32> = set
                .iter_set()
                .filter_map(|i| u32::try_from(usize::from(i)).ok())
                .collect();
            if nodes.is_empty() {
                tracing::debug!("ringfort-pool: the kernel placed the chunk on no known node");
                None
            } else {
                Some(nodes)
            }
        }
        Err(why) => {
            tracing::debug!("ringfort-pool: cannot read the chunk's placement back: {why}");
            None
        }
    };
    if let Some(nodes) = &read_back {
        if nodes.as_slice() != [node] {
            tracing::warn!(
                "ringfort-pool: chunk bound to NUMA node {node} has pages on node(s) {nodes:?}"
            );
        }
    }
    NumaBinding::Bound { node, read_back }
}
