# Golden confidence intervals for the judge's rank-sum interval, from R's
# own wilcox.test. Regenerate with:
#   Rscript pkg/analysis/judge/testdata/wilcox.R > pkg/analysis/judge/testdata/wilcox.json
#
# wilcox.test finds each end point with uniroot(tol = 1e-4), an absolute
# tolerance. So that it is negligible for every vector, the data are
# scaled by s = 1e6 / max|value| before the call and the interval is
# scaled back: ranks, and so the interval (up to the factor), do not change.
# Two constant samples (x = rep(5, 6), y = rep(3, 7)) and all-equal data
# make wilcox.test stop ("missing value" / "all observations are tied"):
# the Go tests expect ErrAllTied there.
set.seed(20261128)
num <- function(v) paste0("[", paste(sprintf("%.17g", v), collapse = ", "), "]")
cases <- list(
  list(name = "normal, no shift", x = rnorm(20, 100, 10), y = rnorm(20, 100, 10)),
  list(name = "latency +40%", x = rnorm(30, 140, 12), y = rnorm(30, 100, 12)),
  list(name = "error rate lower", x = rnorm(25, 0.8, 0.2), y = rnorm(25, 1.2, 0.2)),
  list(name = "integer ties", x = c(3, 4, 4, 5, 5, 5, 6, 7, 7, 8), y = c(2, 3, 3, 4, 4, 5, 5, 5, 6, 6)),
  list(name = "one against two", x = c(1.5), y = c(1, 2)),
  list(name = "two against two", x = c(10, 12), y = c(9, 11)),
  list(name = "three against three", x = c(1, 2, 3), y = c(4, 5, 6)),
  list(name = "small-valued ratios", x = rnorm(20, 0.0012, 0.0002), y = rnorm(20, 0.001, 0.0002)),
  list(name = "unequal sizes", x = rnorm(5, 50, 5), y = rnorm(40, 45, 5)),
  list(name = "large samples", x = rnorm(200, 10.5, 2), y = rnorm(200, 10, 2)),
  list(name = "heavy outliers", x = c(rnorm(30, 100, 5), 1000, 2000), y = c(rnorm(30, 100, 5), 5)),
  list(name = "negative values", x = rnorm(15, -20, 3), y = rnorm(15, -25, 3)),
  list(name = "identical samples", x = c(1, 2, 3, 4, 5, 6), y = c(1, 2, 3, 4, 5, 6)),
  list(name = "ties across samples", x = c(0.1, 0.2, 0.2, 0.3, 0.3, 0.3), y = c(0.2, 0.3, 0.3, 0.4, 0.4, 0.5)),
  list(name = "95% confidence", x = rnorm(12, 5, 1), y = rnorm(12, 4, 1), conf = 0.95)
)
cat("{\n")
cat(sprintf("  \"r\": %s,\n", shQuote(R.version.string, type = "cmd")))
cat("  \"call\": \"wilcox.test(x*s, y*s, conf.int=TRUE, exact=FALSE, correct=TRUE, conf.level=conf)$conf.int / s\",\n")
cat("  \"cases\": [\n")
for (i in seq_along(cases)) {
  c <- cases[[i]]
  conf <- if (is.null(c$conf)) 0.98 else c$conf
  s <- 1e6 / max(abs(c(c$x, c$y)))
  w <- suppressWarnings(wilcox.test(c$x * s, c$y * s, conf.int = TRUE, exact = FALSE, correct = TRUE, conf.level = conf))
  ci <- w$conf.int / s
  cat(sprintf("    {\"name\": %s, \"confidence\": %s, \"x\": %s, \"y\": %s, \"lower\": %s, \"upper\": %s}%s\n",
    shQuote(c$name, type = "cmd"), conf, num(c$x), num(c$y), sprintf("%.17g", ci[1]), sprintf("%.17g", ci[2]),
    if (i < length(cases)) "," else ""))
}
cat("  ]\n}\n")
