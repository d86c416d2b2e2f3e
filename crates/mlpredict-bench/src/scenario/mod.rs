//! One module per scenario; each adds its rows to the report.

pub(crate) mod a_overhead;
pub(crate) mod b_memory;
pub(crate) mod c_economy;
pub(crate) mod d_modes;
pub(crate) mod e_kafka;
