//! All integration tests in one binary (the ripgrep habit): real `kith` processes on temp data
//! dirs, the shared photo corpus, waits with deadlines.

mod bad_keys;
mod capture;
mod cli;
mod crash;
mod edits;
mod export;
mod faults;
mod fixture;
mod flood;
mod free_space;
mod hostile_files;
mod impersonation;
mod import;
mod in_process;
mod index_follows;
mod inflation;
mod invite;
mod later_grantee;
mod node;
mod overreach;
mod people;
mod privacy;
mod purge;
mod rekey;
mod sharing;
mod snapshots;
mod stolen;
mod sync;
mod tamper;
mod transfer;
