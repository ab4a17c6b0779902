DROP TABLE views;
DROP TABLE replicas;
DROP TABLE contents;
DROP TABLE contracts;
