mod handler;
mod types;
