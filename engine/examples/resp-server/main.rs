//! The Ringfort RESP server (being built).

mod commands;
mod db;
mod protocol;
mod reply;

fn main() {}
