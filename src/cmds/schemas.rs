//! `vigil schemas export`.

use std::path::PathBuf;

/// Schema subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write one JSON Schema per event type and version (and the envelope) into a folder,
    /// removing files no event owns.
    Export {
        /// Target folder.
        #[arg(long, default_value = "schemas/json")]
        dir: PathBuf,
    },
}

/// Runs a schema subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Export { dir } => {
            std::fs::create_dir_all(&dir)?;
            let schemas = vigil_schemas::json_schema::all();
            let names: Vec<&str> = schemas.iter().map(|(n, _)| n.as_str()).collect();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") && !names.contains(&name.as_str()) {
                    std::fs::remove_file(entry.path())?;
                }
            }
            for (name, schema) in &schemas {
                std::fs::write(dir.join(name), vigil_schemas::json_schema::render(schema))?;
            }
            eprintln!("wrote {} schemas to {}", schemas.len(), dir.display());
            Ok(())
        }
    }
}
