//! The Cinder/EVS lifecycle of volumes and snapshots, as plain rules over catalog records:
//! which operation each status allows, the status it moves to, what a background operation
//! leaves behind when it finishes or fails, and the quota arithmetic.
//!
//! Nothing here does I/O, HTTP or threads. The API calls these functions inside a catalog
//! transaction (a refusal aborts it, so a half-applied change is never committed); the
//! [`Backend`](crate::backend::Backend) calls the completions when the data work is done; the
//! unit tests (`tests.rs`) walk every status through every operation.
//!
//! ```text
//!             create ─► creating ──ok──► available ◄──────────── detach (last) ── in-use
//!                          └─fail─► error      │  ▲  reserve ─► attaching ─ attach ─┘ ▲
//!  extend:     available|in-use ─► extending ──ok──► (previous)       fail ─► error_extending
//!  upload:     available|in-use(force) ─► uploading ──► (previous, ok or not)
//!  rollback:   available|error_rollbacking ─► rollbacking ──ok──► available, fail ─► error_rollbacking
//!  transfer:   available ─► awaiting-transfer ── accept/withdraw ─► available
//!  retype:     available|in-use ─► (same status, new type: no data moves)
//!  backup:     available|in-use(force) ─► backing-up ──► (previous, ok or not)
//!  restore:    available ─► restoring-backup ──ok──► available, fail ─► error_restoring
//!  delete:     available|error* ─► deleting ──ok──► (gone), fail ─► error_deleting
//! ```
//!
//! Snapshots: `creating → available | error`, `available|error → deleting → (gone) |
//! error_deleting`, `available → rollbacking → available` while their volume rolls back.

mod backup;
mod encryption;
mod quota;
mod refusal;
mod snapshot;
mod tags;
mod transfer;
mod volume;

#[cfg(test)]
mod tests;

pub use backup::{
    backup_finished, begin_backup, begin_backup_delete, begin_restore, has_dependents,
};
pub use encryption::{
    check_retype_encryption, check_transferable, encryption_for_create, NewEncryption, CMK_KEY,
    ENCRYPTED_KEY,
};
pub use quota::{
    extend_deltas, retype_deltas, snapshot_deltas, usage, volume_deltas, within_limits, Deltas,
};
pub use refusal::Refusal;
pub use snapshot::{
    begin_rollback, begin_snapshot_delete, may_snapshot, snapshot_finished, SnapshotOutcome,
};
pub use tags::{add_tags, check_tag, remove_tags, tags_match, MAX_TAGS};
pub use transfer::{accept_transfer, offer_transfer, withdraw_transfer};
pub use volume::{
    attach, begin_delete, begin_extend, begin_upload, check_create_source, detach, finish,
    is_copy_source, may_change, reserve, retype, set_bootable, set_readonly, unreserve, Aftermath,
    CreateSource, MigrationPolicy, MAX_SIZE_GIB,
};
