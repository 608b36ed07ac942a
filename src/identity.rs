//! Identity: projects, users, role grants, passwords and tokens — the state behind the
//! Keystone v3 subset under `/identity/v3`. Passwords are stored as argon2 PHC strings;
//! tokens are 256 random bits, handed out once and stored only as their SHA-256, and expire.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::Digest;

use crate::catalog::{
    Catalog, CatalogError, CatalogRead, GrantRecord, ProjectRecord, SettingRecord, Timestamp,
    TokenRecord, UserRecord,
};

/// The two roles, by name and fixed id.
pub const ROLES: [(&str, &str); 2] = [
    ("admin", "8c8a3d1e2b6f4e0d9a7c5b3f1e2d4c6a"),
    ("member", "3b7e1c5a9d2f4b6e8a0c2e4f6a8b0d1c"),
];

/// The one domain.
pub const DOMAIN_ID: &str = "default";
/// Its name.
pub const DOMAIN_NAME: &str = "Default";

/// Errors of identity operations.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Wrong credentials, unknown/expired token, disabled user or project.
    #[error("The request you have made requires authentication.")]
    Unauthorized,
    /// No such project/user/role.
    #[error("Could not find {0}.")]
    NotFound(String),
    /// A name already taken.
    #[error("Conflict occurred attempting to store {0}.")]
    Conflict(String),
    /// Invalid request.
    #[error("{0}")]
    BadRequest(String),
    /// The password hasher failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

type Result<T> = std::result::Result<T, IdentityError>;

/// Who is calling: what a valid token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User id.
    pub user_id: String,
    /// Project the token is scoped to.
    pub project_id: Option<String>,
    /// Role names on that project.
    pub roles: Vec<String>,
    /// Expiry.
    pub expires_at: Timestamp,
    /// Issue time.
    pub issued_at: Timestamp,
}

impl Principal {
    /// Whether the caller holds the admin role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// A user or project named by id, or by name within the domain.
#[derive(Debug, Clone)]
pub enum NameOrId {
    /// By id.
    Id(String),
    /// By name.
    Name(String),
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The token value (returned once, never stored).
    pub token: String,
    /// What it stands for.
    pub principal: Principal,
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| IdentityError::Hash(e.to_string()))?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)
        .map_err(|e| IdentityError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match argon2::password_hash::PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| IdentityError::Hash(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The identity service over the catalog.
pub struct Identity {
    catalog: Arc<Catalog>,
    token_ttl_secs: u64,
    /// A hash of a random password, checked when the user does not exist.
    decoy_hash: String,
}

impl Identity {
    /// Identity over `catalog`; tokens live `token_ttl_secs`.
    pub fn new(catalog: Arc<Catalog>, token_ttl_secs: u64) -> Result<Self> {
        let decoy_hash = hash_password(&random_hex(16)?)?;
        Ok(Self {
            catalog,
            token_ttl_secs,
            decoy_hash,
        })
    }

    /// Creates project `admin`, user `admin` with `password` and the admin role, unless a
    /// user named `admin` exists. Returns whether it created them.
    pub fn bootstrap_admin(&self, password: &str) -> Result<bool> {
        let hash = hash_password(password)?;
        self.catalog.write(|w| {
            if w.all::<UserRecord>()?.iter().any(|u| u.name == "admin") {
                return Ok(false);
            }
            let project = match w
                .all::<ProjectRecord>()?
                .into_iter()
                .find(|p| p.name == "admin")
            {
                Some(p) => p,
                None => {
                    let p = ProjectRecord {
                        id: new_id(),
                        name: "admin".into(),
                        description: "Bootstrap project".into(),
                        enabled: true,
                    };
                    w.put(&p)?;
                    p
                }
            };
            let user = UserRecord {
                id: new_id(),
                name: "admin".into(),
                password_hash: hash,
                default_project_id: Some(project.id.clone()),
                enabled: true,
            };
            w.put(&user)?;
            w.put(&GrantRecord {
                project_id: project.id,
                user_id: user.id,
                roles: vec!["admin".into()],
            })?;
            w.put(&SettingRecord {
                name: "bootstrapped".into(),
                value: Timestamp::now().cinder(),
            })?;
            Ok(true)
        })
    }

    /// Whether any user exists.
    pub fn has_users(&self) -> Result<bool> {
        Ok(!self.catalog.read(|r| r.all::<UserRecord>())?.is_empty())
    }

    fn find_user(users: Vec<UserRecord>, who: &NameOrId) -> Option<UserRecord> {
        users.into_iter().find(|u| match who {
            NameOrId::Id(id) => &u.id == id,
            NameOrId::Name(n) => &u.name == n,
        })
    }

    fn find_project(projects: Vec<ProjectRecord>, which: &NameOrId) -> Option<ProjectRecord> {
        projects.into_iter().find(|p| match which {
            NameOrId::Id(id) => &p.id == id,
            NameOrId::Name(n) => &p.name == n,
        })
    }

    /// Password authentication, scoped to `scope` (or the user's default project, or
    /// unscoped). Issues a token.
    pub fn authenticate(
        &self,
        user: &NameOrId,
        password: &str,
        scope: Option<&NameOrId>,
    ) -> Result<Issued> {
        let record = self
            .catalog
            .read(|r| Ok::<_, IdentityError>(Self::find_user(r.all()?, user)))?
            .filter(|u| u.enabled);
        // An unknown user costs the same hash as a known one, so timing does not tell
        // which user names exist.
        let hash = record
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.decoy_hash.clone());
        let valid = verify_password(&hash, password);
        match record {
            Some(record) if valid => self.issue(&record, scope),
            _ => Err(IdentityError::Unauthorized),
        }
    }

    /// Re-scopes an existing token (Keystone's `token` method).
    pub fn authenticate_token(&self, token: &str, scope: Option<&NameOrId>) -> Result<Issued> {
        let principal = self.validate(token)?;
        let record = self
            .catalog
            .read(|r| r.get::<UserRecord>(&principal.user_id))?
            .filter(|u| u.enabled)
            .ok_or(IdentityError::Unauthorized)?;
        self.issue(&record, scope)
    }

    fn issue(&self, user: &UserRecord, scope: Option<&NameOrId>) -> Result<Issued> {
        let token = random_hex(32)?;
        let now = Timestamp::now();
        let record = self.catalog.write(|w| {
            let scope = match scope {
                Some(s) => Some(s.clone()),
                None => user.default_project_id.clone().map(NameOrId::Id),
            };
            let (project_id, roles) = match scope {
                None => (None, Vec::new()),
                Some(which) => {
                    let project = Self::find_project(w.all()?, &which)
                        .filter(|p| p.enabled)
                        .ok_or(IdentityError::Unauthorized)?;
                    let roles = w
                        .get::<GrantRecord>(&GrantRecord::key_of(&project.id, &user.id))?
                        .map(|g| g.roles)
                        .unwrap_or_default();
                    if roles.is_empty() {
                        return Err(IdentityError::Unauthorized);
                    }
                    (Some(project.id), roles)
                }
            };
            for old in w.all::<TokenRecord>()? {
                if old.expires_at <= now {
                    w.delete::<TokenRecord>(&old.hash)?;
                }
            }
            let record = TokenRecord {
                hash: sha256_hex(token.as_bytes()),
                user_id: user.id.clone(),
                project_id,
                roles,
                issued_at: now,
                expires_at: now.plus_secs(self.token_ttl_secs),
            };
            w.put(&record)?;
            Ok(record)
        })?;
        Ok(Issued {
            token,
            principal: principal_of(record),
        })
    }

    /// What `token` stands for, if it is known and unexpired.
    pub fn validate(&self, token: &str) -> Result<Principal> {
        let record = self
            .catalog
            .read(|r| r.get::<TokenRecord>(&sha256_hex(token.as_bytes())))?
            .ok_or(IdentityError::Unauthorized)?;
        if record.expires_at <= Timestamp::now() {
            return Err(IdentityError::Unauthorized);
        }
        Ok(principal_of(record))
    }

    /// Revokes `token`.
    pub fn revoke(&self, token: &str) -> Result<()> {
        let hash = sha256_hex(token.as_bytes());
        if self.catalog.write(|w| w.delete::<TokenRecord>(&hash))? {
            Ok(())
        } else {
            Err(IdentityError::NotFound("token".into()))
        }
    }

    /// Creates a project.
    pub fn create_project(&self, name: &str, description: &str) -> Result<ProjectRecord> {
        check_name(name)?;
        self.catalog.write(|w| {
            if w.all::<ProjectRecord>()?.iter().any(|p| p.name == name) {
                return Err(IdentityError::Conflict(format!("project {name}")));
            }
            let p = ProjectRecord {
                id: new_id(),
                name: name.into(),
                description: description.into(),
                enabled: true,
            };
            w.put(&p)?;
            Ok(p)
        })
    }

    /// Creates a user.
    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        default_project_id: Option<&str>,
    ) -> Result<UserRecord> {
        check_name(name)?;
        if password.is_empty() || password.len() > 4096 {
            return Err(IdentityError::BadRequest(
                "password must be 1 to 4096 bytes".into(),
            ));
        }
        let hash = hash_password(password)?;
        self.catalog.write(|w| {
            if w.all::<UserRecord>()?.iter().any(|u| u.name == name) {
                return Err(IdentityError::Conflict(format!("user {name}")));
            }
            if let Some(p) = default_project_id {
                if w.get::<ProjectRecord>(p)?.is_none() {
                    return Err(IdentityError::NotFound(format!("project: {p}")));
                }
            }
            let u = UserRecord {
                id: new_id(),
                name: name.into(),
                password_hash: hash,
                default_project_id: default_project_id.map(str::to_owned),
                enabled: true,
            };
            w.put(&u)?;
            Ok(u)
        })
    }

    /// Grants role `role_id` (id or name) to `user_id` on `project_id`.
    pub fn grant(&self, project_id: &str, user_id: &str, role_id: &str) -> Result<()> {
        let role = role_name(role_id)
            .ok_or_else(|| IdentityError::NotFound(format!("role: {role_id}")))?;
        self.catalog.write(|w| {
            if w.get::<ProjectRecord>(project_id)?.is_none() {
                return Err(IdentityError::NotFound(format!("project: {project_id}")));
            }
            if w.get::<UserRecord>(user_id)?.is_none() {
                return Err(IdentityError::NotFound(format!("user: {user_id}")));
            }
            let key = GrantRecord::key_of(project_id, user_id);
            let mut g = w.get::<GrantRecord>(&key)?.unwrap_or(GrantRecord {
                project_id: project_id.into(),
                user_id: user_id.into(),
                roles: Vec::new(),
            });
            if !g.roles.iter().any(|r| r == role) {
                g.roles.push(role.into());
            }
            w.put(&g)?;
            Ok(())
        })
    }

    /// Roles of `user_id` on `project_id`.
    pub fn roles_of(&self, project_id: &str, user_id: &str) -> Result<Vec<String>> {
        Ok(self
            .catalog
            .read(|r| r.get::<GrantRecord>(&GrantRecord::key_of(project_id, user_id)))?
            .map(|g| g.roles)
            .unwrap_or_default())
    }

    /// Every project.
    pub fn projects(&self) -> Result<Vec<ProjectRecord>> {
        Ok(self.catalog.read(|r| r.all())?)
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        Ok(self.catalog.read(|r| r.all())?)
    }

    /// One user.
    pub fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        Ok(self.catalog.read(|r| r.get(id))?)
    }

    /// One project.
    pub fn project(&self, id: &str) -> Result<Option<ProjectRecord>> {
        Ok(self.catalog.read(|r| r.get(id))?)
    }
}

/// The name of the role with id or name `role`.
pub fn role_name(role: &str) -> Option<&'static str> {
    ROLES
        .iter()
        .find(|(name, id)| *name == role || *id == role)
        .map(|(name, _)| *name)
}

/// The id of role `name`.
pub fn role_id(name: &str) -> &'static str {
    ROLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, id)| *id)
        .unwrap_or("")
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 255 {
        return Err(IdentityError::BadRequest(
            "name must be 1 to 255 characters".into(),
        ));
    }
    Ok(())
}

fn principal_of(r: TokenRecord) -> Principal {
    Principal {
        user_id: r.user_id,
        project_id: r.project_id,
        roles: r.roles,
        expires_at: r.expires_at,
        issued_at: r.issued_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(ttl: u64) -> (tempfile::TempDir, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let cat = Arc::new(Catalog::open(&dir.path().join("c.redb")).unwrap());
        (dir, Identity::new(cat, ttl).unwrap())
    }

    #[test]
    fn password_tokens_are_scoped_hashed_and_expire() {
        let (_d, id) = identity(3600);
        assert!(id.bootstrap_admin("s3cret").unwrap());
        assert!(!id.bootstrap_admin("other").unwrap(), "bootstrap only once");
        let admin = NameOrId::Name("admin".into());
        assert!(matches!(
            id.authenticate(&admin, "wrong", None),
            Err(IdentityError::Unauthorized)
        ));
        let issued = id.authenticate(&admin, "s3cret", None).unwrap();
        assert!(issued.principal.is_admin());
        assert!(issued.principal.project_id.is_some());
        let p = id.validate(&issued.token).unwrap();
        assert_eq!(p, issued.principal);
        // Only the hash is stored.
        let stored: Vec<TokenRecord> = id.catalog.read(|r| r.all()).unwrap();
        assert!(stored.iter().all(|t| t.hash != issued.token));
        id.revoke(&issued.token).unwrap();
        assert!(id.validate(&issued.token).is_err());

        let (_d2, short) = identity(0);
        short.bootstrap_admin("pw").unwrap();
        let t = short.authenticate(&admin, "pw", None).unwrap();
        assert!(matches!(
            short.validate(&t.token),
            Err(IdentityError::Unauthorized)
        ));
    }

    #[test]
    fn users_need_a_grant_on_the_project() {
        let (_d, id) = identity(3600);
        let p = id.create_project("team", "").unwrap();
        let u = id.create_user("alice", "pw", Some(&p.id)).unwrap();
        let alice = NameOrId::Name("alice".into());
        assert!(id.authenticate(&alice, "pw", None).is_err(), "no role yet");
        id.grant(&p.id, &u.id, "member").unwrap();
        let t = id.authenticate(&alice, "pw", None).unwrap();
        assert!(!t.principal.is_admin());
        assert_eq!(t.principal.project_id.as_deref(), Some(p.id.as_str()));
        assert!(matches!(
            id.create_user("alice", "x", None),
            Err(IdentityError::Conflict(_))
        ));
        assert!(id.grant(&p.id, &u.id, "nope").is_err());
        assert!(!verify_password("garbage", "pw"));
    }
}
