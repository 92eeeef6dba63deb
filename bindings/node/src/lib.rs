//! napi-rs glue for the `polygear` Node.js package.
