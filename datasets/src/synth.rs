//! Synthetic shapes data set (placeholder, being written).
