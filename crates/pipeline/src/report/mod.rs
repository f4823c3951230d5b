//! The `report` stage: the run's final tables ([`study`]) and the up-front time estimate ([`estimate`]).

pub mod estimate;
pub mod study;
