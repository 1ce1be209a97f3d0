-- Each service owns its database (DESIGN.md decision 1).
CREATE DATABASE auth;
CREATE DATABASE canvas;
