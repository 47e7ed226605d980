//! Retention and compliance: the retention job that deletes what is past its time, and the
//! compliance export of a meeting or a conversation as one archive.

pub mod archive;
pub mod retention;
