//! The shell's connection: arrow-flight's Flight SQL client signed in once, plus what the
//! shell needs beyond it (cancelling a running query, subscriptions, the catalog).

use std::time::Duration;

use arrow::array::{Array, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::Schema;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use arrow_flight::{Action, CancelFlightInfoRequest, FlightInfo, HandshakeRequest};
use futures::TryStreamExt;
use prost::Message;
use quilldb_flight::client::LiveStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::args::{Login, TlsFiles};
use crate::error::{Error, Result};

/// A signed-in connection; clones share its channel and token.
#[derive(Clone)]
pub struct Connection {
    client: FlightSqlServiceClient<Channel>,
    channel: Channel,
    token: String,
    /// The URL connected to.
    pub url: String,
    /// The user signed in.
    pub user: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({} as {})", self.url, self.user)
    }
}

/// A table and its columns, for completion.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The namespace.
    pub namespace: String,
    /// The table's name.
    pub name: String,
    /// Its column names.
    pub columns: Vec<String>,
}

impl Connection {
    /// Connects to `login.url` and signs in (Basic credentials for a Bearer token).
    pub async fn open(login: &Login) -> Result<Self> {
        let address = login
            .url
            .replacen("grpc+tcp://", "http://", 1)
            .replacen("grpc+tls://", "https://", 1)
            .replacen("grpc://", "http://", 1);
        let connect = |reason: String| Error::Connect {
            url: login.url.clone(),
            reason,
        };
        let tls = address.starts_with("https://");
        let mut endpoint = Endpoint::from_shared(address)
            .map_err(|e| connect(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        if tls {
            endpoint = endpoint
                .tls_config(tls_config(&login.tls)?)
                .map_err(|e| connect(source_chain(&e)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect(source_chain(&e)))?;
        let token = sign_in(channel.clone(), &login.user, &login.password).await?;
        let mut client = FlightSqlServiceClient::new(channel.clone());
        client.set_token(token.clone());
        Ok(Self {
            client,
            channel,
            token,
            url: login.url.clone(),
            user: login.user.clone(),
        })
    }

    /// Plans `sql` (CommandStatementQuery) and answers its FlightInfo.
    pub async fn plan(&mut self, sql: &str) -> Result<FlightInfo> {
        Ok(self.client.execute(sql.to_string(), None).await?)
    }

    /// Reads every batch of a FlightInfo's endpoints.
    pub async fn fetch(&mut self, info: &FlightInfo) -> Result<(Schema, Vec<RecordBatch>)> {
        let schema = info.clone().try_decode_schema()?;
        let mut batches = Vec::new();
        for ep in &info.endpoint {
            let Some(ticket) = ep.ticket.clone() else {
                continue;
            };
            let stream = self.client.do_get(ticket).await?;
            let mut got: Vec<RecordBatch> = stream.try_collect().await?;
            batches.append(&mut got);
        }
        Ok((schema, batches))
    }

    /// Runs a statement and collects its result.
    pub async fn query(&mut self, sql: &str) -> Result<(Schema, Vec<RecordBatch>)> {
        let info = self.plan(sql).await?;
        self.fetch(&info).await
    }

    /// Asks the server to cancel the query of `info` (CancelFlightInfo).
    pub async fn cancel(&mut self, info: &FlightInfo) -> Result<()> {
        let body = CancelFlightInfoRequest {
            info: Some(info.clone()),
        }
        .encode_to_vec();
        let action = Action::new("CancelFlightInfo", body);
        let results = self.client.do_action(action).await?;
        let _: Vec<_> = results.try_collect().await?;
        Ok(())
    }

    /// Opens a subscription (`SUBSCRIBE TO ...`).
    pub async fn subscribe(&self, sql: &str) -> Result<LiveStream> {
        Ok(
            quilldb_flight::client::subscribe(self.channel.clone(), Some(&self.token), sql, None)
                .await?,
        )
    }

    /// The server's name and version (GetSqlInfo).
    pub async fn server_version(&mut self) -> Result<String> {
        let info = self
            .client
            .get_sql_info(vec![
                SqlInfo::FlightSqlServerName,
                SqlInfo::FlightSqlServerVersion,
            ])
            .await?;
        let (_, batches) = self.fetch(&info).await?;
        let mut parts = Vec::new();
        for b in &batches {
            // GetSqlInfo answers (info_name, value: dense union); the strings are its first type.
            let Some(values) = b
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::UnionArray>()
            else {
                continue;
            };
            for i in 0..values.len() {
                let v = values.value(i);
                if let Some(s) = v.as_any().downcast_ref::<StringArray>() {
                    parts.push(s.value(0).to_string());
                }
            }
        }
        Ok(parts.join(" "))
    }

    /// The namespaces the user can see.
    pub async fn namespaces(&mut self) -> Result<Vec<String>> {
        let info = self
            .client
            .get_db_schemas(CommandGetDbSchemas::default())
            .await?;
        let (_, batches) = self.fetch(&info).await?;
        let mut out = Vec::new();
        for b in &batches {
            if let Some(col) = b
                .column_by_name("db_schema_name")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            {
                out.extend(col.iter().flatten().map(str::to_string));
            }
        }
        Ok(out)
    }

    /// Every table the user can see, with its columns (GetTables with schemas).
    pub async fn tables(&mut self) -> Result<Vec<TableInfo>> {
        let info = self
            .client
            .get_tables(CommandGetTables {
                include_schema: true,
                ..Default::default()
            })
            .await?;
        let (_, batches) = self.fetch(&info).await?;
        let mut out = Vec::new();
        for b in &batches {
            let text = |name: &str| {
                b.column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    .cloned()
            };
            let (Some(ns), Some(names)) = (text("db_schema_name"), text("table_name")) else {
                continue;
            };
            let schemas = b
                .column_by_name("table_schema")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .cloned();
            for i in 0..b.num_rows() {
                let columns = schemas
                    .as_ref()
                    .and_then(|s| arrow::ipc::convert::try_schema_from_ipc_buffer(s.value(i)).ok())
                    .map(|s| s.fields().iter().map(|f| f.name().clone()).collect())
                    .unwrap_or_default();
                out.push(TableInfo {
                    namespace: ns.value(i).to_string(),
                    name: names.value(i).to_string(),
                    columns,
                });
            }
        }
        Ok(out)
    }
}

/// Handshake with Basic credentials; answers the Bearer token the server issues. Done here
/// rather than by arrow-flight's client so that a refusal keeps its gRPC code.
/// The TLS settings of a grpc+tls:// connection.
fn tls_config(files: &TlsFiles) -> Result<ClientTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Local(format!("reading {}: {e}", path.display())))
    };
    let mut config = ClientTlsConfig::new();
    config = match &files.ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
        None => config.with_native_roots(),
    };
    if let Some((cert, key)) = &files.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

async fn sign_in(channel: Channel, user: &str, password: &str) -> Result<String> {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut req = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    let value = format!("Basic {basic}")
        .parse()
        .map_err(|_| Error::Local("the user name or password is not a valid header".into()))?;
    req.metadata_mut().insert("authorization", value);
    let resp = FlightServiceClient::new(channel).handshake(req).await?;
    let bearer = resp
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    match bearer {
        Some(t) => Ok(t),
        None => {
            let mut stream = resp.into_inner();
            match stream.message().await? {
                Some(r) if !r.payload.is_empty() => String::from_utf8(r.payload.to_vec())
                    .map_err(|_| Error::Local("the server's token is not text".into())),
                _ => Err(Error::Local("the server answered no token".into())),
            }
        }
    }
}

/// An error with its sources, on one line.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text
}
