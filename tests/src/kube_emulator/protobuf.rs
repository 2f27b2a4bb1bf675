//! Just enough of Kubernetes' protobuf encoding to read the request bodies
//! typed clients send: kubectl's `create namespace` / `create secret`, and
//! helm's release storage (Secrets). The envelope is `k8s\0` + a
//! `runtime.Unknown` {typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2};
//! `raw` is the object in the field numbers of k8s.io/api's generated.proto.
//! Namespaces, Secrets and ConfigMaps are decoded; other kinds get 415.
//! Answers are always JSON, which client-go decodes by Content-Type.

use base64::Engine;
use serde_json::{Map, Value, json};

/// A decoded field: number and value.
enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

fn varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn fields(data: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let tag = varint(data, &mut at)?;
        let number = u32::try_from(tag >> 3).ok()?;
        match tag & 7 {
            0 => out.push(Field::Varint(number, varint(data, &mut at)?)),
            1 => at += 8,
            2 => {
                let len = usize::try_from(varint(data, &mut at)?).ok()?;
                out.push(Field::Bytes(number, data.get(at..at + len)?));
                at += len;
            }
            5 => at += 4,
            _ => return None,
        }
    }
    Some(out)
}

fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// A `map<string, string|bytes>` entry list.
fn map_entries(data: &[&[u8]], bytes_values: bool) -> Option<Value> {
    let mut map = Map::new();
    for entry in data {
        let (mut key, mut value) = (String::new(), Vec::new());
        for f in fields(entry)? {
            match f {
                Field::Bytes(1, k) => key = String::from_utf8_lossy(k).into_owned(),
                Field::Bytes(2, v) => value = v.to_vec(),
                _ => {}
            }
        }
        let value = if bytes_values {
            json!(base64::engine::general_purpose::STANDARD.encode(&value))
        } else {
            json!(String::from_utf8_lossy(&value))
        };
        map.insert(key, value);
    }
    Some(Value::Object(map))
}

fn repeated<'a>(fs: &[Field<'a>], number: u32) -> Vec<&'a [u8]> {
    fs.iter()
        .filter_map(|f| match f {
            Field::Bytes(n, b) if *n == number => Some(*b),
            _ => None,
        })
        .collect()
}

fn object_meta(data: &[u8]) -> Option<Value> {
    let fs = fields(data)?;
    let mut meta = Map::new();
    for f in &fs {
        match f {
            Field::Bytes(1, b) => drop(meta.insert("name".into(), text(b))),
            Field::Bytes(2, b) => drop(meta.insert("generateName".into(), text(b))),
            Field::Bytes(3, b) => drop(meta.insert("namespace".into(), text(b))),
            Field::Bytes(5, b) => drop(meta.insert("uid".into(), text(b))),
            Field::Bytes(6, b) => drop(meta.insert("resourceVersion".into(), text(b))),
            Field::Varint(7, v) => drop(meta.insert("generation".into(), json!(v))),
            _ => {}
        }
    }
    for (number, key) in [(11, "labels"), (12, "annotations")] {
        let entries = repeated(&fs, number);
        if !entries.is_empty() {
            meta.insert(key.into(), map_entries(&entries, false)?);
        }
    }
    let finalizers: Vec<Value> = repeated(&fs, 14).into_iter().map(text).collect();
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    let mut owners = Vec::new();
    for owner in repeated(&fs, 13) {
        let mut o = Map::new();
        for f in fields(owner)? {
            match f {
                Field::Bytes(1, b) => drop(o.insert("kind".into(), text(b))),
                Field::Bytes(3, b) => drop(o.insert("name".into(), text(b))),
                Field::Bytes(4, b) => drop(o.insert("uid".into(), text(b))),
                Field::Bytes(5, b) => drop(o.insert("apiVersion".into(), text(b))),
                Field::Varint(6, v) => drop(o.insert("controller".into(), json!(v != 0))),
                Field::Varint(7, v) => drop(o.insert("blockOwnerDeletion".into(), json!(v != 0))),
                _ => {}
            }
        }
        owners.push(Value::Object(o));
    }
    if !owners.is_empty() {
        meta.insert("ownerReferences".into(), Value::Array(owners));
    }
    Some(Value::Object(meta))
}

/// Decodes a protobuf request body into the JSON object, or says why not.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body.strip_prefix(b"k8s\0").ok_or("not a Kubernetes protobuf envelope")?;
    let unknown = fields(envelope).ok_or("malformed protobuf envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for f in &unknown {
        match f {
            Field::Bytes(1, type_meta) => {
                for t in fields(type_meta).ok_or("malformed typeMeta")? {
                    match t {
                        Field::Bytes(1, v) => api_version = String::from_utf8_lossy(v).into_owned(),
                        Field::Bytes(2, k) => kind = String::from_utf8_lossy(k).into_owned(),
                        _ => {}
                    }
                }
            }
            Field::Bytes(2, r) => raw = r,
            _ => {}
        }
    }
    let fs = fields(raw).ok_or("malformed object")?;
    let metadata = repeated(&fs, 1).first().map_or(Some(json!({})), |m| object_meta(m)).ok_or("malformed metadata")?;
    let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => {
            let data = repeated(&fs, 2);
            if !data.is_empty() {
                object["data"] = map_entries(&data, true).ok_or("malformed data")?;
            }
            if let Some(t) = repeated(&fs, 3).first() {
                object["type"] = text(t);
            }
            let string_data = repeated(&fs, 4);
            if !string_data.is_empty() {
                object["stringData"] = map_entries(&string_data, false).ok_or("malformed stringData")?;
            }
            if let Some(Field::Varint(_, v)) = fs.iter().find(|f| matches!(f, Field::Varint(5, _))) {
                object["immutable"] = json!(*v != 0);
            }
        }
        ("v1", "ConfigMap") => {
            let data = repeated(&fs, 2);
            if !data.is_empty() {
                object["data"] = map_entries(&data, false).ok_or("malformed data")?;
            }
            let binary = repeated(&fs, 3);
            if !binary.is_empty() {
                object["binaryData"] = map_entries(&binary, true).ok_or("malformed binaryData")?;
            }
        }
        ("v1", "Namespace") => {
            if let Some(spec) = repeated(&fs, 2).first() {
                let finalizers: Vec<Value> = fields(spec)
                    .ok_or("malformed spec")?
                    .iter()
                    .filter_map(|f| match f {
                        Field::Bytes(1, b) => Some(text(b)),
                        _ => None,
                    })
                    .collect();
                object["spec"] = json!({"finalizers": finalizers});
            }
        }
        _ => return Err(format!("protobuf bodies of {api_version} {kind} are not decoded; send JSON")),
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(number << 3 | 2).unwrap_or(0), u8::try_from(bytes.len()).unwrap_or(0)];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_protobuf_secret_decodes_with_labels_and_data() {
        let label = [field(1, b"owner"), field(2, b"helm")].concat();
        let meta = [field(1, b"sh.helm.release.v1.x.v1"), field(3, b"ns"), field(11, &label)].concat();
        let data = [field(1, b"release"), field(2, b"\x00\x01")].concat();
        let secret = [field(1, &meta), field(2, &data), field(3, b"helm.sh/release.v1")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let object = decode(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(object["metadata"]["name"], "sh.helm.release.v1.x.v1");
        assert_eq!(object["metadata"]["labels"]["owner"], "helm");
        assert_eq!(object["data"]["release"], "AAE=");
        assert_eq!(object["type"], "helm.sh/release.v1");
    }
}
