//! History checkers used by the fault-injection tests. Pure: no I/O.

pub mod durability;
pub mod locks;
pub mod monotonic;
pub mod register;
pub mod rmw;
