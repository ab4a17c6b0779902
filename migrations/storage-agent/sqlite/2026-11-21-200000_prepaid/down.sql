DROP TABLE prepaid;
