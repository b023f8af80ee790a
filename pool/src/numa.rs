//! NUMA placement: which node an arena binds to, binding before first touch, and reading
//! the placement back after prefault.
//!
//! With the `numa` feature (the default) this goes through hwloc. Without it the arena
//! relies on first touch from the thread that creates it, and says so in its report.

use std::fmt;

use crate::config::NumaPolicy;
use crate::error::PoolError;

/// How an arena chunk is placed, as reported after prefault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NumaBinding {
    /// The chunk is bound to `node` (OS index) with a strict policy.
    Bound {
        /// The node the policy asked for.
        node: u32,
        /// The nodes hwloc reports holding the chunk's pages after prefault, or `None`
        /// when the kernel could not tell.
        read_back: Option<Vec<u32>>,
    },
    /// No binding: pages land on the node of the thread that prefaulted them.
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
#[cfg(not(feature = "numa"))]
pub(crate) fn bind(
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
#[cfg(not(feature = "numa"))]
pub(crate) fn read_back(_ptr: *mut u8, _len: usize, binding: NumaBinding) -> NumaBinding {
    binding
}
