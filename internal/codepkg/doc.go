// Package codepkg validates and extracts zip packages: function code, later
// layers.
//
// A package is untrusted input. Inspect and Extract reject archives that are
// too large — by the bytes actually decompressed, never by what the headers
// claim, since zip bombs lie — and entries that would land outside the
// package: ".." traversal, absolute paths, Windows drive letters and
// backslashes, paths through a symlink or a file, and symlinks whose target
// resolves outside the package (resolved like the kernel would, following the
// archive's other symlinks). Device files, FIFOs and sockets are refused.
//
// Extract writes directories 0755 and files 0644, or 0755 when the zip marks
// them executable, so an unprivileged sandbox uid can read them. It unpacks
// into a temporary sibling of dest through an os.Root (no write can leave
// it, even through a symlink) and renames it into place only when the whole
// package is unpacked, without replacing an existing dest.
//
// Rejections are *Error values naming the reason, the entry and the fix;
// errors.Is(err, ErrTooLarge) or ErrInvalid tells which kind of API error to
// return.
package codepkg
