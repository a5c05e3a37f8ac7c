module jvm-guard.io/node/pause

go 1.26.0
