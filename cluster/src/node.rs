//! Node identity.

use std::fmt;
use std::sync::Arc;

/// The stable name of a node (in Kubernetes, the StatefulSet pod name).
///
/// Cheap to clone: the name is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(name: impl AsRef<str>) -> Self {
        NodeId(Arc::from(name.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A node id plus its generation (start time in milliseconds since the epoch).
///
/// A node that restarts keeps its id and gets a higher generation, so the others can tell
/// a restart from a stale rumour of the old process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    pub generation: u64,
}
