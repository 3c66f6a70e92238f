// Package web holds the dashboard's browser side: index.html (a Go
// html/template that receives the session token and the namespace), app.js
// and style.css. They are plain files, embedded as they are: no build step,
// no external URLs, so the binary serves the whole UI offline.
package web

import "embed"

// Files are index.html, app.js and style.css.
//
//go:embed index.html app.js style.css
var Files embed.FS
