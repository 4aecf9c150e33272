//! The session-option messages of Flight (SetSessionOptions, GetSessionOptions, CloseSession),
//! which arrow-flight does not generate yet: field numbers as in Flight.proto.

use std::collections::HashMap;

/// Action type of SetSessionOptions.
pub const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
/// Action type of GetSessionOptions.
pub const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
/// Action type of CloseSession.
pub const CLOSE_SESSION: &str = "CloseSession";
/// Action type of CancelFlightInfo.
pub const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// A list of strings, one kind of option value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringListValue {
    /// The strings.
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

/// One option value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    /// The value; none means "unset".
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<OptionValue>,
}

/// The kinds of option value.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum OptionValue {
    /// A string.
    #[prost(string, tag = "1")]
    StringValue(String),
    /// A boolean.
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    /// An integer.
    #[prost(sfixed64, tag = "3")]
    Int64Value(i64),
    /// A float.
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    /// A list of strings.
    #[prost(message, tag = "5")]
    StringListValue(StringListValue),
}

/// SetSessionOptions request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsRequest {
    /// Options to set.
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// Why an option was not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ErrorValue {
    /// Unspecified.
    Unspecified = 0,
    /// The option name is not known.
    InvalidName = 1,
    /// The value is not acceptable.
    InvalidValue = 2,
    /// Another error.
    Error = 3,
}

/// One option's error.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsError {
    /// The reason.
    #[prost(enumeration = "ErrorValue", tag = "1")]
    pub value: i32,
}

/// SetSessionOptions result.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    /// The options that were not set.
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionsError>,
}

/// GetSessionOptions result.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSessionOptionsResult {
    /// The options and their values.
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// CloseSession status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CloseSessionStatus {
    /// Unspecified.
    Unspecified = 0,
    /// Closed.
    Closed = 1,
    /// Closing.
    Closing = 2,
    /// Not closeable.
    NotCloseable = 3,
}

/// CloseSession result.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    /// The status.
    #[prost(enumeration = "CloseSessionStatus", tag = "1")]
    pub status: i32,
}
