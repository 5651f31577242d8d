// Package codepkg validates and extracts zip code packages (function code,
// later layers) safely: no path traversal, no absolute paths, no symlink
// escaping the package, the unzipped size enforced on the bytes actually
// written (zip headers can lie), and executable bits kept.
package codepkg
