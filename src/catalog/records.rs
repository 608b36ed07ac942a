//! The record kinds of the catalog.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Record, Table, Timestamp};

macro_rules! statuses {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)*
        }
        impl $name {
            /// The API's name for the status.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }
        }
    };
}

statuses!(
    /// A volume's status (`docs/api.md` §6).
    VolumeStatus {
        /// Being created.
        Creating = "creating",
        /// Ready, not attached.
        Available = "available",
        /// Attached.
        InUse = "in-use",
        /// Creation failed.
        Error = "error",
        /// Reserved for an attach.
        Attaching = "attaching",
        /// Being detached.
        Detaching = "detaching",
        /// Being copied to an image.
        Uploading = "uploading",
        /// Being grown.
        Extending = "extending",
        /// Growing failed.
        ErrorExtending = "error_extending",
        /// Being deleted.
        Deleting = "deleting",
        /// Deleting failed.
        ErrorDeleting = "error_deleting",
        /// Being rolled back to a snapshot.
        Rollbacking = "rollbacking",
        /// Rolling back failed.
        ErrorRollbacking = "error_rollbacking",
        /// Offered for transfer to another project.
        AwaitingTransfer = "awaiting-transfer",
        /// Restoring a backup into it failed (its content is partly restored).
        ErrorRestoring = "error_restoring",
        /// A backup of it is being taken (I/O goes on).
        BackingUp = "backing-up",
        /// A backup is being restored into it.
        RestoringBackup = "restoring-backup",
        /// Locked for maintenance (never entered by the API).
        Maintenance = "maintenance",
    }
);

statuses!(
    /// A snapshot's status (`docs/api.md` §6).
    SnapshotStatus {
        /// Being taken.
        Creating = "creating",
        /// Ready.
        Available = "available",
        /// Taking it failed.
        Error = "error",
        /// Being deleted.
        Deleting = "deleting",
        /// Deleting failed.
        ErrorDeleting = "error_deleting",
        /// Its volume is being rolled back to it.
        Rollbacking = "rollbacking",
    }
);

statuses!(
    /// A backup's status (Cinder's).
    BackupStatus {
        /// Being taken.
        Creating = "creating",
        /// Complete in the backup target.
        Available = "available",
        /// Taking it failed (nothing of it is listed in the target).
        Error = "error",
        /// Being deleted.
        Deleting = "deleting",
        /// Deleting it failed.
        ErrorDeleting = "error_deleting",
        /// Being restored into a volume.
        Restoring = "restoring",
    }
);

/// Where a new volume's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// Zeros.
    Blank,
    /// A copy of a snapshot.
    Snapshot(String),
    /// A copy of another volume.
    Volume(String),
    /// A restore of a backup.
    Backup(String),
}

/// An operation on a volume's data that was started and must be finished or failed, even
/// across a crash of the daemon (startup reconciles from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingOp {
    /// Creating the replica set (and filling it from the source).
    Create(VolumeSource),
    /// Growing to this many GiB; the status to return to.
    Extend {
        /// New size in GiB.
        new_size: u64,
        /// Status before the extension.
        previous: VolumeStatus,
    },
    /// Deleting the replica set (and, with cascade, its snapshots).
    Delete,
    /// Rolling back to this snapshot.
    Rollback(String),
    /// Writing an image; the status to return to.
    Upload {
        /// The image being written.
        image_id: String,
        /// Status before the upload.
        previous: VolumeStatus,
    },
    /// Taking a backup; the status to return to.
    Backup {
        /// The backup being taken.
        backup_id: String,
        /// Status before the backup.
        previous: VolumeStatus,
    },
    /// Restoring this backup into the volume.
    Restore {
        /// The backup being restored.
        backup_id: String,
    },
}

/// A volume's attachment (status-only: the data path is NBD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The attachment's id.
    pub id: String,
    /// Instance the volume is attached to.
    pub server_id: Option<String>,
    /// Host it is attached to.
    pub host_name: Option<String>,
    /// Mount point, e.g. `/dev/vdb`.
    pub device: String,
    /// `rw` or `ro`.
    pub mode: String,
    /// When.
    pub attached_at: Timestamp,
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// UUID: also the NBD export name and the replica directory name.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Status.
    pub status: VolumeStatus,
    /// Size in GiB.
    pub size: u64,
    /// Availability zone.
    pub availability_zone: String,
    /// Volume type name.
    pub volume_type: String,
    /// Source snapshot, if created from one.
    pub snapshot_id: Option<String>,
    /// Source volume, if cloned.
    pub source_volid: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Read-only flag (admin metadata `readonly`), honoured by the NBD export.
    #[serde(default)]
    pub readonly: bool,
    /// The read-only flag was set at least once: from then on the volume's `metadata` shows
    /// `readonly` as "True" or "False" (Cinder keeps the admin key once it exists).
    #[serde(default)]
    pub readonly_shown: bool,
    /// Bootable flag.
    pub bootable: bool,
    /// Shared disk.
    pub multiattach: bool,
    /// EVS tags (key → value; at most ten). Absent in records written before tags existed.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// Operation in progress on the data, if any.
    pub pending: Option<PendingOp>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Option<Timestamp>,
    /// An encrypted volume's data key, wrapped by its master key (never the key itself).
    /// Chosen at creation, never changed; absent in plain volumes and older records.
    #[serde(default)]
    pub encryption: Option<crate::keys::VolumeKeyRecord>,
}

impl Record for VolumeRecord {
    const TABLE: Table = Table::new("volumes");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// UUID: also the engine's snapshot id.
    pub id: String,
    /// Owning project (the volume's).
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Source volume.
    pub volume_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Status.
    pub status: SnapshotStatus,
    /// Size of the volume when taken, GiB.
    pub size: u64,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Option<Timestamp>,
}

impl Record for SnapshotRecord {
    const TABLE: Table = Table::new("snapshots");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// An offer to give a volume to another project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// UUID.
    pub id: String,
    /// Offering project.
    pub project_id: String,
    /// The volume.
    pub volume_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Random salt of the auth key hash.
    pub salt: String,
    /// SHA-256 of salt + auth key, hex.
    pub key_hash: String,
    /// Created.
    pub created_at: Timestamp,
}

impl Record for TransferRecord {
    const TABLE: Table = Table::new("transfers");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// An image written by `os-volume_upload_image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name given at upload.
    pub name: String,
    /// Source volume.
    pub volume_id: String,
    /// `raw`, `qcow2`, …
    pub disk_format: String,
    /// Container format (recorded only).
    pub container_format: String,
    /// File name under `<data-dir>/images/`.
    pub file: String,
    /// `saving`, `active` or `killed` (Glance's words).
    pub status: String,
    /// Created.
    pub created_at: Timestamp,
}

impl Record for ImageRecord {
    const TABLE: Table = Table::new("images");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// Quota limits of one project (`-1` = unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRecord {
    /// The project.
    pub project_id: String,
    /// Limits by resource name (`volumes`, `gigabytes`, `snapshots`, `volumes_SSD`, …).
    pub limits: BTreeMap<String, i64>,
}

impl Record for QuotaRecord {
    const TABLE: Table = Table::new("quotas");
    fn key(&self) -> String {
        self.project_id.clone()
    }
}

/// A project (tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRecord {
    /// Id (32 hex chars).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Enabled.
    pub enabled: bool,
}

impl Record for ProjectRecord {
    const TABLE: Table = Table::new("projects");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Id (32 hex chars).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Argon2 PHC string of the password.
    pub password_hash: String,
    /// Project a token is scoped to when the request names none.
    pub default_project_id: Option<String>,
    /// Enabled.
    pub enabled: bool,
}

impl Record for UserRecord {
    const TABLE: Table = Table::new("users");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// The roles a user holds on a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The project.
    pub project_id: String,
    /// The user.
    pub user_id: String,
    /// Role names (`admin`, `member`).
    pub roles: Vec<String>,
}

impl GrantRecord {
    /// The key of the grant of `user` on `project`.
    pub fn key_of(project_id: &str, user_id: &str) -> String {
        format!("{project_id}/{user_id}")
    }
}

impl Record for GrantRecord {
    const TABLE: Table = Table::new("grants");
    fn key(&self) -> String {
        Self::key_of(&self.project_id, &self.user_id)
    }
}

/// An issued token, stored by the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// The user.
    pub user_id: String,
    /// The project it is scoped to (none: unscoped).
    pub project_id: Option<String>,
    /// Roles on that project.
    pub roles: Vec<String>,
    /// Issued.
    pub issued_at: Timestamp,
    /// Expires.
    pub expires_at: Timestamp,
}

impl Record for TokenRecord {
    const TABLE: Table = Table::new("tokens");
    fn key(&self) -> String {
        self.hash.clone()
    }
}

/// A named daemon-wide setting (e.g. that the first admin was created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingRecord {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

impl Record for SettingRecord {
    const TABLE: Table = Table::new("settings");
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A volume type: a name users pick at creation, its extra specs and its QoS spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeTypeRecord {
    /// UUID.
    pub id: String,
    /// Unique name (what volume records hold).
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Listed to every project (private types: admins only).
    pub is_public: bool,
    /// Extra specs (`qos:<key>` entries add to or override the QoS spec's keys).
    pub extra_specs: BTreeMap<String, String>,
    /// The associated QoS spec.
    pub qos_specs_id: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Option<Timestamp>,
    /// The type's encryption spec: volumes of the type are created encrypted. Absent in
    /// plain types and older records.
    #[serde(default)]
    pub encryption: Option<EncryptionSpec>,
}

/// A volume type's encryption spec (Cinder's `types/{id}/encryption`). Tripod encrypts in
/// the back end, above the replicas, with AES-256-GCM-SIV per block and 256-bit keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionSpec {
    /// UUID (Cinder's `encryption_id`).
    pub encryption_id: String,
    /// Who encrypts (`tripod`).
    pub provider: String,
    /// The cipher (`aes-256-gcm-siv`).
    pub cipher: String,
    /// Key size in bits (256).
    pub key_size: u32,
    /// Where (`back-end`).
    pub control_location: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Option<Timestamp>,
}

impl Record for VolumeTypeRecord {
    const TABLE: Table = Table::new("volume_types");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A QoS spec: named limits that volume types are associated with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosSpecRecord {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Who enforces it: `front-end`, `back-end` or `both` (Cinder's consumers).
    pub consumer: String,
    /// The limits (`crate::qos::spec` keys).
    pub specs: BTreeMap<String, String>,
    /// Created.
    pub created_at: Timestamp,
}

impl Record for QosSpecRecord {
    const TABLE: Table = Table::new("qos_specs");
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A backup of a volume (its data is in the backup target, under its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Id (also the manifest's name in the target).
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Who created it.
    pub user_id: String,
    /// The volume it was taken from (which may be gone since).
    pub volume_id: String,
    /// The Cinder snapshot it was taken from, if one was named.
    pub snapshot_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Cinder's container (a label here: every backup lives in the daemon's target).
    pub container: Option<String>,
    /// Status.
    pub status: BackupStatus,
    /// Size of the volume backed up, GiB.
    pub size: u64,
    /// Block objects the backup names.
    pub object_count: u64,
    /// Block objects it uploaded (those the target lacked).
    #[serde(default)]
    pub uploaded_objects: u64,
    /// Bytes it uploaded (compressed).
    #[serde(default)]
    pub uploaded_bytes: u64,
    /// Bytes it read from the volume.
    #[serde(default)]
    pub read_bytes: u64,
    /// The backup it is incremental to.
    pub parent_id: Option<String>,
    /// Why it failed.
    pub fail_reason: Option<String>,
    /// The engine snapshot of the volume holding exactly this backup's content, kept so
    /// the next incremental backup reads only what changed since.
    pub base_snapshot: Option<String>,
    /// The volume it is being restored into.
    pub restore_volume_id: Option<String>,
    /// Availability zone.
    pub availability_zone: String,
    /// User metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// When the data was taken.
    pub data_timestamp: Timestamp,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Option<Timestamp>,
    /// The master key of the volume it was taken from, if that volume is encrypted: a
    /// restore into a new volume encrypts it under the same master key (with a key of its
    /// own). The backup itself holds the volume's plaintext (`docs/backups.md`).
    #[serde(default)]
    pub source_cmk: Option<String>,
}

impl Record for BackupRecord {
    const TABLE: Table = Table::new("backups");
    fn key(&self) -> String {
        self.id.clone()
    }
}
