module github.com/wakepush/wakepush/schemas

go 1.26.8
