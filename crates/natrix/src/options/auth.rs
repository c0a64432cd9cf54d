//! The `authorization { users, default_permissions }` block and `no_auth_user`, read as
//! nats-server's `parseUsers`, `parseUserPermissions` and `parseAllowResponses` read them, with
//! their error texts.

use natrix_conf::{Entry, Map, Value, value_as_duration};
use natrix_server::{
    PermissionsConfig, ResponsePermissionConfig, SubjectPermissionConfig, UserConfig,
};
use natrix_subject::is_valid_subject;

use super::{FieldError, Mapper};
use crate::compat;

impl Mapper<'_> {
    /// `users: [ { user, password, permissions }, { nkey, permissions } ]`.
    pub(super) fn users(&mut self, entry: &Entry) -> Option<Vec<UserConfig>> {
        let Value::Array(items) = &entry.value.value else {
            self.error(
                entry,
                format!(
                    "Expected users field to be an array, got {}",
                    entry.value.value.type_name()
                ),
            );
            return None;
        };
        let mut users = Vec::with_capacity(items.len());
        for item in items {
            let Value::Map(map) = &item.value else {
                self.errors.push(FieldError {
                    pos: Some(item.pos.clone()),
                    message: format!(
                        "Expected user entry to be a map/struct, got {}",
                        item.value.type_name()
                    ),
                });
                continue;
            };
            if let Some(user) = self.user(map) {
                users.push(user);
            }
        }
        Some(users)
    }

    fn user(&mut self, map: &Map) -> Option<UserConfig> {
        let mut user = UserConfig::default();
        let mut nkey_entry = None;
        for e in map {
            match e.key.to_ascii_lowercase().as_str() {
                "nkey" => {
                    user.nkey = self.string(e);
                    nkey_entry = Some(e);
                }
                "user" | "username" => user.user = self.string(e),
                "pass" | "password" => user.password = self.string(e),
                "permission" | "permissions" => user.permissions = self.permissions(e),
                key => match compat::user(key) {
                    Some(support) => self.unsupported_or_ignored(e, support),
                    None => self.unknown(e),
                },
            }
        }
        if let Some(entry) = nkey_entry
            && (user.user.is_some() || user.password.is_some())
        {
            self.error(entry, "Nkey users do not take usernames or passwords");
            return None;
        }
        if user.nkey.is_none() && user.user.is_none() {
            self.error_at_map(map, "User entry requires a user");
            return None;
        }
        Some(user)
    }

    fn error_at_map(&mut self, map: &Map, message: &str) {
        match map.iter().next() {
            Some(first) => self.error(first, message),
            None => self.errors.push(FieldError {
                pos: None,
                message: message.into(),
            }),
        }
    }

    /// `permissions { publish, subscribe, allow_responses }`.
    pub(super) fn permissions(&mut self, entry: &Entry) -> Option<PermissionsConfig> {
        let map = self.map(entry)?;
        let mut permissions = PermissionsConfig::default();
        for e in map {
            match e.key.to_ascii_lowercase().as_str() {
                "pub" | "publish" | "import" => {
                    permissions.publish = self.subject_permission(e, false)
                }
                "sub" | "subscribe" | "export" => {
                    permissions.subscribe = self.subject_permission(e, true)
                }
                "allow_responses" | "allow_response" => {
                    permissions.allow_responses = self.allow_responses(e)
                }
                _ => self.error(
                    e,
                    format!("Unknown field \"{}\" parsing permissions", e.key),
                ),
            }
        }
        Some(permissions)
    }

    /// `{ allow, deny }`, or a subject or list of subjects to allow.
    fn subject_permission(
        &mut self,
        entry: &Entry,
        with_queues: bool,
    ) -> Option<SubjectPermissionConfig> {
        let Value::Map(map) = &entry.value.value else {
            let allow = self.perm_subjects(entry, with_queues)?;
            return Some(SubjectPermissionConfig {
                allow: Some(allow),
                deny: Vec::new(),
            });
        };
        let mut permission = SubjectPermissionConfig::default();
        for e in map {
            match e.key.to_ascii_lowercase().as_str() {
                "allow" => permission.allow = self.perm_subjects(e, with_queues),
                "deny" => permission.deny = self.perm_subjects(e, with_queues).unwrap_or_default(),
                _ => self.error(
                    e,
                    format!(
                        "Unknown field name \"{}\" parsing subject permissions, only 'allow' or 'deny' are permitted",
                        e.key
                    ),
                ),
            }
        }
        Some(permission)
    }

    /// A subject or an array of subjects; subscribe rules may be `"subject queue"`.
    fn perm_subjects(&mut self, entry: &Entry, with_queues: bool) -> Option<Vec<String>> {
        let subjects: Vec<String> = match &entry.value.value {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => {
                let mut subjects = Vec::with_capacity(items.len());
                for item in items {
                    match &item.value {
                        Value::String(s) => subjects.push(s.clone()),
                        other => {
                            self.errors.push(FieldError {
                                pos: Some(item.pos.clone()),
                                message: format!(
                                    "Subject in permissions array cannot be cast to string, got {}",
                                    other.type_name()
                                ),
                            });
                            return None;
                        }
                    }
                }
                subjects
            }
            other => {
                self.error(
                    entry,
                    format!(
                        "Expected subject permissions to be a subject, or array of subjects, got {}",
                        other.type_name()
                    ),
                );
                return None;
            }
        };
        let mut valid = true;
        for rule in &subjects {
            let fields: Vec<&str> = rule.split_whitespace().collect();
            let subject = match fields.as_slice() {
                [subject] => subject,
                [subject, _queue] if with_queues => subject,
                _ => {
                    self.error(entry, format!("subject {rule:?} is not a valid subject"));
                    valid = false;
                    continue;
                }
            };
            if !is_valid_subject(subject.as_bytes()) {
                self.error(entry, format!("subject {subject:?} is not a valid subject"));
                valid = false;
            }
        }
        valid.then_some(subjects)
    }

    /// `allow_responses: true | false | { max, expires }`.
    fn allow_responses(&mut self, entry: &Entry) -> Option<ResponsePermissionConfig> {
        let map = match &entry.value.value {
            Value::Bool(true) => return Some(ResponsePermissionConfig::default()),
            Value::Bool(false) => return None,
            Value::Map(map) => map,
            other => {
                self.error(
                    entry,
                    format!(
                        "Expected allow_responses to be a boolean or a map, got {}",
                        other.type_name()
                    ),
                );
                return None;
            }
        };
        let mut responses = ResponsePermissionConfig::default();
        for e in map {
            match e.key.to_ascii_lowercase().as_str() {
                "max" | "max_msgs" | "max_messages" | "max_responses" => {
                    if let Some(max) = self.int(e) {
                        // As nats-server: a negative max is unlimited, like 0.
                        responses.max = u32::try_from(max.max(0)).unwrap_or(u32::MAX);
                    }
                }
                "expires" | "expiration" | "ttl" => match value_as_duration(&e.value.value) {
                    Ok((d, _)) => responses.expires = d,
                    Err(err) => self.error(e, format!("error parsing expires: {err}")),
                },
                _ => self.error(
                    e,
                    format!("Unknown field \"{}\" parsing allow_responses", e.key),
                ),
            }
        }
        Some(responses)
    }
}
