-- Each service owns its database (docs/architecture.md, decision 1).
CREATE DATABASE auth;
CREATE DATABASE canvas;
