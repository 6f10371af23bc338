module github.com/wakepush/wakepush/deploy/local

go 1.26.8
