//! Pod volumes on the node (being written).
