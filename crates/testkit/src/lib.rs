//! quorumd's test kit, a dev-dependency only: the history checkers (`checker`), the nemesis
//! with its fault-injecting proxy (`nemesis`), the test cluster of real `redis-server`
//! processes and quorumd instances (`cluster`), bench support (`bench`), a bare
//! Redis-protocol client (`resp`), the external tools some tests run (`tools`), and the text
//! entry formats before format 3 (`old_formats`).

pub mod bench;
pub mod checker;
pub mod cluster;
pub mod nemesis;
pub mod old_formats;
pub mod resp;
pub mod tools;
