//! Reading container logs in the CRI log format (being written).
